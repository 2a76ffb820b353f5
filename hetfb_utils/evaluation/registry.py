"""The benchmark registry: a benchmark is one module that declares what it is, and the evaluation, the tables,
the intervals and the recipe-level comparisons pick it up.

A benchmark is **one module** in `evaluation/benchmarks/` that builds a `Benchmark` and passes it to `register` at
import (`evaluation/benchmarks/__init__.py` imports every module of the folder, so a new file is all it takes). It
declares everything the rest of the kit reads:

* `files(params)`: the data files it reads (paths in the data mirror's layout, or absolute): the runner re-runs the
  evaluation when one changes, and each cached result is keyed by their content;
* `size`: its size parameter (a field of `evaluation`, e.g. `crows_max`), or, for a benchmark the schema does not
  name, `evaluation.max_items.<name>` (`max_items(benchmark, params)`);
* `load(params)` (the reader): the run's items (drawn by its size and `evaluation.seed`);
* `score(model, tok, items, params)`: a result dict; its `items` holds each reported metric's value per item with
  the items' `id` (what the intervals resample);
* `table` and `columns`: `tables/<table>.csv` and `<table>_ci`, one column per (name, per-item numerator, per-item
  denominator or None);
* `row(result)`: the plain table's row (default: the result's scalar entries);
* `title`: its heading in RESULTS.md; `order`: where it runs and is reported among the others;
* `enabled(params)`, `fingerprint(items)`, `settings(params)`: whether a run evaluates it; what keys its cache
  (default: the `evaluation` section, the evaluation seed and the number of items, with its files' content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    files: Callable[[Any], Sequence[str]] = field(default=lambda params: ())
    size: str | None = None  # its size parameter: a field of `evaluation` (else `evaluation.max_items.<name>`)
    order: int = 100  # its place among the benchmarks (the evaluation's order and the tables')

    def file_paths(self, params) -> dict[str, str]:
        """Its data files as {name: path}: mirror-layout names under the data mirror (`url:<name>` without one),
        absolute paths as they are."""
        from pathlib import Path

        from ..data import data_dir

        root = data_dir(params)
        out = {}
        for name in self.files(params):
            p = Path(name)
            out[name] = str(p) if p.is_absolute() else (str(root / name) if root is not None else f"url:{name}")
        return out

    def key(self, params, items) -> str:
        """The cache key of this benchmark's result for a model: its settings, the evaluation seed, its items and the
        content of its files."""
        import hashlib
        import json

        from ..data import fingerprint_files

        settings = self.settings(params) if self.settings else params.resolved_dump()["evaluation"]
        files = fingerprint_files(self.file_paths(params))
        blob = json.dumps(
            [self.name, settings, params.eval_seed, self.fingerprint(items), files],
            sort_keys=True,
            default=str,
        )
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
    """The registered benchmarks in their order (those `params` enables, when given). An `evaluation.max_items` name
    that no benchmark has is one error naming the registered ones."""
    if params is not None:
        unknown = sorted(set(params.evaluation.max_items) - set(REGISTRY))
        if unknown:
            from ..common.errors import ParamsError

            raise ParamsError(
                f"evaluation.max_items: no benchmark named {unknown}; the registered benchmarks are {sorted(REGISTRY)}"
            )
    ordered = sorted(REGISTRY.values(), key=lambda b: b.order)
    return [b for b in ordered if params is None or b.enabled(params)]


def max_items(benchmark: Benchmark | str, params):
    """A benchmark's size: `evaluation.max_items.<name>` when given, else its own field of `evaluation` (`size`), else
    None (every item)."""
    b = REGISTRY[benchmark] if isinstance(benchmark, str) else benchmark
    if b.name in params.evaluation.max_items:
        return params.evaluation.max_items[b.name]
    return getattr(params.evaluation, b.size) if b.size else None


def eval_files(params) -> dict[str, str]:
    """Every file the evaluation reads (each enabled benchmark's `files`), with its content hash: a changed file
    re-runs notebook 05 (the OASST held-out pairs come from stage 1)."""
    from ..data import fingerprint_files

    out: dict[str, str] = {}
    for b in benchmarks(params):
        out.update(b.file_paths(params))
    return fingerprint_files(out)


def item_tables() -> dict[str, tuple[str, list[tuple[str, str, str | None]]]]:
    """table -> (result key, [(column, per-item numerator, denominator or None)]) of every benchmark with
    per-item columns: what the intervals, the paired differences and the recipe-level comparisons read."""
    return {b.table: (b.name, list(b.columns)) for b in REGISTRY.values() if b.table and b.columns}


def item_count(benchmark: Benchmark, items) -> int:
    """How many items a benchmark's loaded items hold (its fingerprint when that is a count)."""
    fp = benchmark.fingerprint(items)
    return fp if isinstance(fp, int) else len(fp)
