"""The benchmark registry: a benchmark is one module that declares what it is, and the evaluation, the tables,
the intervals and the recipe-level comparisons pick it up.

A benchmark module builds a `Benchmark` and passes it to `register` at import (`evaluation/benchmarks/*.py` do;
a new one is imported by `evaluation/benchmarks/__init__.py`, or by whoever registers it, e.g. a test):

* `load(params)`: the run's items (drawn by `evaluation.*_max` and `evaluation.seed`);
* `score(model, tok, items, params)`: a result dict; its `items` holds each reported metric's value per item with
  the items' `id` (what the intervals resample);
* `table` and `columns`: `tables/<table>.csv` and `<table>_ci`, one column per (name, per-item numerator, per-item
  denominator or None);
* `row(result)`: the plain table's row (default: the result's scalar entries);
* `enabled(params)`, `fingerprint(items)`, `settings(params)`: whether a run evaluates it; what keys its cache
  (default: the `evaluation` section, the evaluation seed and the number of items).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def scalars(result: dict) -> dict:
    """A result's reported numbers (not its per-item values, timing or provenance)."""
    return {
        k: v for k, v in result.items() if not isinstance(v, (dict, list)) and k not in ("seconds", "produced_by_run")
    }


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its name, how its items are loaded and scored, its table and per-item columns."""

    name: str  # the key of its result in a model's results
    load: Callable[[Any], Any]
    score: Callable[[Any, Any, Any, Any], dict]
    title: str = ""
    table: str | None = None
    columns: tuple[tuple[str, str, str | None], ...] = ()
    row: Callable[[dict], dict] = scalars
    enabled: Callable[[Any], bool] = field(default=lambda params: True)
    fingerprint: Callable[[Any], Any] = field(default=lambda items: len(items))
    settings: Callable[[Any], Any] | None = None  # what the cache key reads of the params (default: `evaluation`)

    def key(self, params, items) -> str:
        """The cache key of this benchmark's result for a model: its settings, the evaluation seed, its items."""
        import hashlib
        import json

        settings = self.settings(params) if self.settings else params.resolved_dump()["evaluation"]
        blob = json.dumps([self.name, settings, params.eval_seed, self.fingerprint(items)], sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add (or replace) a benchmark; returns it."""
    REGISTRY[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    """Remove a benchmark (tests that register a toy one)."""
    REGISTRY.pop(name, None)


def benchmarks(params=None) -> list[Benchmark]:
    """The registered benchmarks in registration order (those `params` enables, when given)."""
    return [b for b in REGISTRY.values() if params is None or b.enabled(params)]


def item_tables() -> dict[str, tuple[str, list[tuple[str, str, str | None]]]]:
    """table -> (result key, [(column, per-item numerator, denominator or None)]) of every benchmark with
    per-item columns: what the intervals, the paired differences and the recipe-level comparisons read."""
    return {b.table: (b.name, list(b.columns)) for b in REGISTRY.values() if b.table and b.columns}


def item_count(benchmark: Benchmark, items) -> int:
    """How many items a benchmark's loaded items hold (its fingerprint when that is a count)."""
    fp = benchmark.fingerprint(items)
    return fp if isinstance(fp, int) else len(fp)
