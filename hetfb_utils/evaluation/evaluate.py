"""Stage 5: which benchmarks run on which model of the run, cached per (model, metric, data).

The scoring engine is `hetfb_utils.models.scoring`, the benchmarks are `evaluation.benchmarks.*`, the
tables `evaluation.tables`; this module lists the run's models, loads the evaluation sets once,
evaluates a model on every metric (one cache file each) and lets each variant's reward model judge
the answers.
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
from ..models.scoring import generate_greedy
from .benchmarks.crows import eval_crows
from .benchmarks.ifeval import eval_ifeval, ifeval_usable
from .benchmarks.oasst import oasst_gen_prompts, oasst_likelihood_accuracy, oasst_pairs
from .benchmarks.winobias import eval_winobias, eval_winogender, winogender_items, winogender_sample
from .benchmarks.winogrande import eval_winogrande


@dataclass
class ModelSpec:
    name: str  # Table-1 row name: Base, S, R, HD-0.2-S, ...
    variant: str | None
    kind: str | None  # S | R | None for Base
    adapters: list


def run_models(params: Params) -> list[ModelSpec]:
    from ..training.rl import model_adapters

    specs = [ModelSpec("Base", None, None, [])]
    kinds = ("S",) if params.rl.algorithm == "none" else ("S", "R")
    for v in params.train_variants:
        for kind in kinds:
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
        return self.dir / model_fp / f"{metric}-{data_key}.json"

    def get(self, *key):
        p = self.path(*key)
        return json.loads(p.read_text()) if p.is_file() else None

    def put(self, value, *key):
        from ..common.report import atomic_write_json

        atomic_write_json(value, self.path(*key))


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def eval_data(params: Params) -> dict:
    """The evaluation sets of a run (subsets as `evaluation.*_max` say), loaded once."""
    from .. import data as D

    ev = params.evaluation
    drops = D.Drops()
    root = D.data_dir(params)
    wb = (
        D.load_winobias_pairs(ev.winobias_split, root, "winobias_eval", drops)
        if root is not None
        else D.winobias_hf_pairs(ev.winobias_split, "winobias_eval", drops)
    )
    if ev.winobias_max_pairs and len(wb) > ev.winobias_max_pairs:
        rng = np.random.default_rng(params.eval_seed)
        wb = [wb[i] for i in sorted(rng.choice(len(wb), ev.winobias_max_pairs, replace=False))]
    sents, tmpl, stats = D.load_winogender(params)
    wg = winogender_sample(winogender_items(sents), ev.winogender_max, params.eval_seed)
    wgr = D.parse_winogrande(D.load_winogrande_rows(ev.winogrande_split, root), "winogrande_eval", drops)
    if ev.winogrande_max and len(wgr) > ev.winogrande_max:
        wgr = pd.DataFrame(wgr).sample(n=ev.winogrande_max, random_state=params.eval_seed).to_dict("records")
    crows = D.load_crows_pairs(params)
    if ev.crows_max is not None and len(crows) > ev.crows_max:
        crows = crows.sample(n=ev.crows_max, random_state=params.eval_seed)
    heldout = params.run_dir / "data" / "oasst_heldout.parquet"
    oasst = pd.read_parquet(heldout) if heldout.is_file() else pd.DataFrame()
    if ev.oasst_max_pairs and len(oasst) > ev.oasst_max_pairs:
        oasst = oasst.sample(n=ev.oasst_max_pairs, random_state=params.eval_seed)
    ifeval = D.load_ifeval(params) if ev.ifeval_max != 0 else []
    ifeval, ifeval_skipped = ifeval_usable(ifeval)
    if ev.ifeval_max:
        ifeval = ifeval[: ev.ifeval_max]
    return {
        "winobias": wb,
        "winogender": (wg, stats),
        "winogrande": wgr,
        "crows": crows,
        "oasst": oasst.reset_index(drop=True),
        "ifeval": ifeval,
        "ifeval_skipped_needs_punkt": ifeval_skipped,
        "drops": drops.frame(),
        "key": _key(
            params.resolved_dump()["evaluation"],
            params.eval_seed,
            len(wb),
            len(wg),
            len(wgr),
            len(crows),
            len(oasst),
            len(ifeval),
            list(oasst.get("prompt_id", [])),
        ),
    }


def evaluate_model(
    params: Params,
    spec: ModelSpec,
    data: dict | None,
    cache: ResultCache,
    progress=print,
    metrics: list[str] | None = None,
) -> dict:
    """Every metric for one model (cached per metric); failures are reported, not raised."""
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_tokenizer

    fp = model_fingerprint(params, spec)
    ev, bs = params.evaluation, params.evaluation.batch_size
    gbs = ev.generate_batch_size
    results: dict = {"model": spec.name, "variant": spec.variant, "kind": spec.kind, "fingerprint": fp}
    if metrics is None:
        metrics = ["winobias", "winogender", "winogrande", "crows", "oasst_ll", "qualitative", "oasst_gen"]
        if data["ifeval"]:
            metrics.append("ifeval")
    keys = dict.fromkeys(metrics, data["key"] if data else None)
    if "qualitative" in keys:  # depends only on the prompts: shared with notebook 04
        keys["qualitative"] = _key(ev.qualitative_prompts, ev.max_new_tokens)
    todo = [m for m in metrics if cache.get(fp, m, keys[m]) is None]
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
    for m in metrics:
        hit = cache.get(fp, m, keys[m])
        if hit is not None:
            results[m] = hit
            continue
        t0 = time.time()
        note(f"evaluation: {spec.name} · {m}")
        if m == "winobias":
            # answers are generated on the scorer's prompt batches: generation-wide batches
            val, det = eval_winobias(model, tok, data["winobias"], ev.generate_batch_size, params)
            val["examples"] = det.head(5).to_dict("records")
        elif m == "winogender":
            val, det = eval_winogender(model, tok, data["winogender"][0], data["winogender"][1], bs, params)
            val["per_occupation_female"] = (
                det[det.gender == "female"]
                .groupby("occupation")["pred"]
                .apply(lambda s: float((s == 0).mean()))
                .to_dict()
            )
        elif m == "winogrande":
            val, _ = eval_winogrande(model, tok, data["winogrande"], bs, ev.winogrande_method)
        elif m == "crows":
            per, det = eval_crows(model, tok, data["crows"], bs, params)
            wide = det.pivot(index="id", columns="template", values="correct").astype(float)
            wide = wide.loc[list(dict.fromkeys(det["id"]))]
            val = {
                "per_template": per.loc["all"].to_dict(),
                "per_bias_type": per.to_dict(),
                "items": {"id": wide.index.tolist(), **{c: wide[c].tolist() for c in wide.columns}},
            }
        elif m == "oasst_ll":
            val = (
                oasst_likelihood_accuracy(model, tok, data["oasst"], params, bs)
                if len(data["oasst"])
                else {"accuracy": None, "pairs": 0, "items": {"id": [], "likelihood_pref_accuracy": []}}
            )
        elif m == "qualitative":
            prompts = [format_prompt(tok, q, "[]", params) for q in ev.qualitative_prompts]
            val = {
                "answers": dict(
                    zip(ev.qualitative_prompts, generate_greedy(model, tok, prompts, ev.max_new_tokens, gbs))
                )
            }
        elif m == "oasst_gen":
            sub = data["oasst"].head(ev.oasst_generate_max)
            prompts = oasst_gen_prompts(tok, sub, params)
            val = {
                "prompts": sub["prompt"].tolist(),
                "prompt_ids": sub["prompt_id"].tolist(),
                "answers": generate_greedy(model, tok, prompts, ev.max_new_tokens, gbs),
            }
        else:
            val, _ = eval_ifeval(model, tok, data["ifeval"], params, gbs)
            val["skipped_needs_punkt"] = data["ifeval_skipped_needs_punkt"]
        val["seconds"] = round(time.time() - t0, 2)
        val["produced_by_run"] = params.run_name
        cache.put(val, fp, m, keys[m])
        results[m] = cache.get(fp, m, keys[m])  # as a later run will read it: the same key order and types
    del model
    return results


def reward_judgements(params: Params, results: list[dict], data: dict) -> pd.DataFrame:
    """Each variant's reward model scores its S and R answers and Base's answers to the same
    held-out OASST prompts: mean reward, win-rate vs Base; and its accuracy on the human pairs."""
    from ..common.stats import interval, proportion, seed_for
    from ..models.loading import base_model_path, load_reward_model, load_tokenizer
    from ..training.reward import pairwise_correct, reward_scores
    from ..training.stages import stage_dir

    base = next((r for r in results if r["model"] == "Base" and "oasst_gen" in r), None)
    rows = []
    if params.rl.algorithm != "ppo" or base is None or not base["oasst_gen"]["answers"]:
        return pd.DataFrame(rows)
    tok = load_tokenizer(base_model_path(params))
    prompts = oasst_gen_prompts(tok, data["oasst"], params)
    bs = params.evaluation.batch_size
    pairs = oasst_pairs(tok, data["oasst"], params)  # formatted once for every variant's reward model
    for v in params.train_variants:
        rm_dir = stage_dir(params, v, "reward")
        if not (rm_dir / "manifest.json").is_file():
            continue
        rm = load_reward_model(params, stage_dir(params, v, "sft"), rm_dir)
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
