"""Stage 5: which benchmarks run on which model of the run, cached per (model, benchmark, items).

The scoring engine is `hetfb_utils.models.scoring`, the benchmarks are registered by `evaluation.benchmarks.*`
(`evaluation.registry`), the tables are `evaluation.tables`; this module lists the run's models, loads every
benchmark's items once, evaluates a model on each (one cache file each) and lets each variant's reward model
judge the answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.params import Params
from ..common.progress import note
from .benchmarks.oasst import oasst_gen_prompts, oasst_pairs
from .registry import benchmarks


@dataclass
class ModelSpec:
    """A model of the run: its Table-1 name, variant, kind (S / R / None for Base) and adapters."""

    name: str  # Table-1 row name: Base, S, R, HD-0.2-S, ...
    variant: str | None
    kind: str | None  # S | R | None for Base
    adapters: list


def run_models(params: Params) -> list[ModelSpec]:
    """The run's models: Base, each trained variant's -S model, and -R where the variant gets one."""
    from ..training.rl import model_adapters

    specs = [ModelSpec("Base", None, None, [])]
    for v in params.train_variants:
        for kind in ("S", "R") if v in params.rl_variants else ("S",):
            name = kind if v == "wino" else f"{v.upper()}-{kind}"
            specs.append(ModelSpec(name, v, kind, model_adapters(params, v, kind)))
    return specs


def model_fingerprint(params: Params, spec: ModelSpec) -> str:
    """The model (base, prompt template, adapters' stage keys without the variant's name: the data
    hash names the data) and the code that scores it: results cached under an older code version
    are not reused, and the same model in another run (or under another variant name) is."""
    from ..common.version import code_version

    parts = [params.digest("model"), code_version("evaluation")]
    for a in spec.adapters:
        m = Path(a) / "manifest.json"
        key = json.loads(m.read_text())["key"] if m.is_file() else f"missing:{a}"
        parts.append({k: v for k, v in key.items() if k != "variant"} if isinstance(key, dict) else key)
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class ResultCache:
    """Results per (model fingerprint, metric, data/settings hash), shared by every run under
    `<cache_dir>/eval/`: adding a variant evaluates only it, and a model another run already
    evaluated on the same items is not evaluated again (its result says which run produced it)."""

    def __init__(self, params: Params):
        self.dir = params.cache_path / "eval"

    def path(self, model_fp: str, metric: str, data_key: str) -> Path:
        """The cache file of one (model, benchmark, items) result."""
        return self.dir / model_fp / f"{metric}-{data_key}.json"

    def get(self, *key):
        """A cached result, or None."""
        p = self.path(*key)
        return json.loads(p.read_text()) if p.is_file() else None

    def put(self, value, *key):
        """Cache a result."""
        from ..common.report import atomic_write_json

        atomic_write_json(value, self.path(*key))


def eval_data(params: Params) -> dict:
    """The items of every benchmark the run evaluates (`registry.benchmarks(params)`), loaded once."""
    return {b.name: b.load(params) for b in benchmarks(params)}


def evaluate_model(
    params: Params,
    spec: ModelSpec,
    data: dict | None,
    cache: ResultCache,
    progress=print,
    metrics: list[str] | None = None,
) -> dict:
    """Every registered benchmark (or `metrics`) for one model, each cached per (model, benchmark, items); the
    items come from `data` (`eval_data`) or are loaded here. A model that fails to load is reported, not raised."""
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer

    fp = model_fingerprint(params, spec)
    results: dict = {"model": spec.name, "variant": spec.variant, "kind": spec.kind, "fingerprint": fp}
    chosen = [b for b in benchmarks(params) if metrics is None or b.name in metrics]
    items = {b.name: (data[b.name] if data and b.name in data else b.load(params)) for b in chosen}
    keys = {b.name: b.key(params, items[b.name]) for b in chosen}
    todo = [b.name for b in chosen if cache.get(fp, b.name, keys[b.name]) is None]
    model = tok = None
    if todo:
        t0 = time.time()
        try:
            tok = load_tokenizer(base_model_path(params))
            model = load_causal_lm(params, adapters=spec.adapters)
        except Exception as e:  # noqa: BLE001 - one bad model must not stop the others
            results["error"] = f"{type(e).__name__}: {e}"
            return results
        progress(f"  {spec.name}: loaded in {time.time() - t0:.1f}s; computing {todo}")
    for b in chosen:
        if b.name in todo:
            t0 = time.time()
            note(f"evaluation: {spec.name} · {b.name}")
            val = b.score(model, tok, items[b.name], params)
            val["seconds"] = round(time.time() - t0, 2)
            val["produced_by_run"] = params.run_name
            cache.put(val, fp, b.name, keys[b.name])
        results[b.name] = cache.get(fp, b.name, keys[b.name])  # as a later run reads it: same key order and types
    del model
    return results


def reward_judgements(params: Params, results: list[dict], data: dict) -> pd.DataFrame:
    """Each variant's reward model scores its S and R answers and Base's answers to the same
    held-out OASST prompts: mean reward, win-rate vs Base; and its accuracy on the human pairs."""
    from ..common.stats import interval, proportion, seed_for
    from ..models.loading import base_model_path, load_tokenizer
    from ..training.reward import load_variant_reward, pairwise_correct, reward_scores
    from ..training.stages import stage_dir

    base = next((r for r in results if r["model"] == "Base" and "oasst_gen" in r), None)
    rows = []
    if params.rl.algorithm not in ("ppo", "rloo") or base is None or not base["oasst_gen"]["answers"]:
        return pd.DataFrame(rows)
    tok = load_tokenizer(base_model_path(params))
    prompts = oasst_gen_prompts(tok, data["oasst_ll"], params)
    bs = params.evaluation.batch_size
    pairs = oasst_pairs(tok, data["oasst_ll"], params)  # formatted once for every variant's reward model
    for v in params.rl_variants:
        rm_dir = stage_dir(params, v, "reward")
        if not (rm_dir / "manifest.json").is_file():
            continue
        rm = load_variant_reward(params, v, rm_dir)
        ok = pairwise_correct(rm, tok, pairs, bs) if pairs else []
        acc = proportion(int(sum(ok)), len(ok))  # Wilson CI; at chance when it covers 0.5
        base_r = reward_scores(rm, tok, [p + a for p, a in zip(prompts, base["oasst_gen"]["answers"])], bs)
        for r in results:
            if r.get("variant") != v or "oasst_gen" not in r:
                continue
            mine = reward_scores(rm, tok, [p + a for p, a in zip(prompts, r["oasst_gen"]["answers"])], bs)
            wins = (mine > base_r) + 0.5 * (mine == base_r)
            win, lo, hi = interval(wins, seed=seed_for(params.eval_seed, "win_rate", r["model"]))
            rows.append(
                {
                    "model": r["model"],
                    "variant": v,
                    "reward_model_accuracy_human_pairs": acc["value"],
                    "reward_model_accuracy_lo": acc["lo"],
                    "reward_model_accuracy_hi": acc["hi"],
                    "human_pairs": acc["n"],
                    "mean_reward": float(np.mean(mine)),
                    "base_mean_reward": float(np.mean(base_r)),
                    "win_rate_vs_base": win,
                    "win_rate_lo": lo,
                    "win_rate_hi": hi,
                    "prompts": len(wins),
                }
            )
        del rm
    return pd.DataFrame(rows)
