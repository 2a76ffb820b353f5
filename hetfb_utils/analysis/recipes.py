"""Conclusions about recipes: the recipe-level intervals (`analysis.multiboot`) over the runs of a seed group.

A seed group is the runs of one recipe that differ only in `training.seed` (`make seeds`); they are scored on
the same evaluation items. For every metric of every table:

* `recipe_table`  each model's value with its interval: recipe-level (k seeds x n items) when the group has
  k >= 2 seeds, model-level (one training seed: the interval covers evaluation items only) otherwise;
* `recipe_differences`  each model vs Base, each control (`RAND/Q/DIV-f`) vs its `HD-f` twin, each filtered
  `HD-f` vs the full union `HD-1.0`, each `-R` vs its `-S`, and the same model in a later group vs the first
  (recipe A in one run vs recipe B in another: their seeds need not match);
* `variance_split`  per metric and comparison, the share of the variance from training seeds vs evaluation
  items, and the seeds x items needed to detect a given difference at 80 % power, with its cost in minutes.

Within a group the models of one training seed share it (the same LoRA initialisation and data-order stream):
they are compared seed by seed (MultiBERTs' paired seeds), which stays valid when they are unrelated (the
difference's variance is then estimated from k - 1 degrees of freedom instead of more). Across groups the
seeds are drawn apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..common.stats import seed_for
from ..evaluation.registry import item_tables
from .design import design, detectable_effect, variance_components
from .multiboot import EXPLORATORY_BELOW, LOG_METRICS, Arm, contrast, terms
from .runs import SeedGroup
from .uncertainty import CONTROL, item_frame

ONE_SEED = "model (one training seed: the interval covers evaluation items only)"
# differences the design helper sizes a study for (the metric's units)
DESIGN_EFFECTS = {
    "Bias": 0.03,
    "Bias (Entropy)": 0.005,
    "Bias (Cluster)": 0.3,
    "Accuracy": 0.05,
    "Similarity": 0.05,
    "accuracy": 0.05,
    "likelihood_pref_accuracy": 0.1,
}
ITEM_GRID = (100, 200, 400, 790)


def conclusion_kind(seeds: list[int], items: int) -> str:
    """What an interval speaks about, from the seeds per arm (0 = Base, not trained), labelled by its weakest
    trained arm: a recipe when every trained arm has >= 2 seeds (exploratory below `EXPLORATORY_BELOW`), one
    trained model when an arm has a single seed (its seed variance is unknown, so the interval covers items)."""
    trained = [k for k in seeds if k]
    if not trained:
        return "Base (not trained: the interval covers evaluation items only)"
    design = f"{' vs '.join(str(k) for k in seeds)} seeds x {items} items"
    if min(trained) < 2:
        return ONE_SEED if max(trained) < 2 else f"model ({design}: a one-seed arm, no recipe-level conclusion)"
    if min(trained) < EXPLORATORY_BELOW:
        return f"recipe, exploratory ({design})"
    return f"recipe ({design})"


def group_arms(group_models: list[tuple[SeedGroup, str]], key: str, num: str, den: str | None) -> list[Arm] | None:
    """The arms of one comparison on the items every run of every arm scored (None when a model is missing)."""
    frames = []
    for g, model in group_models:
        per_run = [r.models().get(model) for r in g.runs]
        if any(x is None for x in per_run):
            return None
        items = [item_frame(x, key) for x in per_run]
        if any(f is None or num not in f for f in items):
            return None
        if model == "Base":
            items = items[:1]  # not trained: the same model in every run
        frames.append((g, model, items))
    common = None
    for _, _, items in frames:
        for f in items:
            common = f.index if common is None else common.intersection(f.index)
    if common is None or not len(common):
        return None
    arms = []
    for g, model, items in frames:
        vals = np.stack([f.loc[common, num].to_numpy(float) for f in items])
        dens = np.stack([f.loc[common, den].to_numpy(float) for f in items]) if den else None
        arms.append(
            Arm(
                vals,
                seeds=[(g.label if model != "Base" else "base", s) for s in g.seeds[: len(items)]],
                den=dens,
                fixed=model == "Base",
            )
        )
    return arms


def arms_for(
    group: SeedGroup, model: str, reference: str | None = None, table: str = "table1_winobias", metric: str = "Bias"
) -> list[Arm] | None:
    """The arms of `model` (and `reference`) of a group on one metric, on the items every run scored."""
    key, cols = item_tables()[table]
    num, den = next((n, d) for c, n, d in cols if c == metric)
    return group_arms([(group, model)] + ([(group, reference)] if reference else []), key, num, den)


def _row(table: str, metric: str, arms: list[Arm], weights: list[float], seed: int, **labels) -> dict:
    # a single arm of a non-negative, skewed metric: its interval on the log scale (multiboot.LOG_METRICS)
    transform = "log" if len(arms) == 1 and metric in LOG_METRICS else None
    r = contrast(arms, weights, seed=seed, transform=transform)
    r.pop("pivot")
    seeds = r.pop("seeds")
    return {
        "table": table,
        "metric": metric,
        **labels,
        **r,
        "seeds": " vs ".join(map(str, seeds)),
        "conclusion": conclusion_kind(seeds, r["items"]),
        # the difference the kit's interval detects with 80 % power at this design (differences only)
        "detectable_80": detectable_effect(terms(arms, weights)) if len(arms) > 1 else float("nan"),
    }


def table_metrics():
    """Every (table, result key, column, per-item numerator, denominator) of the registered benchmarks."""
    for table, (key, cols) in item_tables().items():
        for col, num, den in cols:
            yield table, key, col, num, den


def recipe_table(groups: list[SeedGroup], seed: int = 0) -> pd.DataFrame:
    """Every model's value in every group, with its recipe-level (or one-seed) interval."""
    rows = []
    for g in groups:
        models = g.models()
        for table, key, col, num, den in table_metrics():
            for m in models:
                arms = group_arms([(g, m)], key, num, den)
                if arms:
                    rows.append(
                        _row(
                            table,
                            col,
                            arms,
                            [1.0],
                            seed_for(seed, "value", g.label, table, col, m),
                            group=g.label,
                            model=m,
                        )
                    )
    return pd.DataFrame(rows)


def comparison_pairs(models: list[str]) -> list[tuple[str, str, str]]:
    """(model, reference, kind) within a group: vs Base, control vs HD twin, filtered vs full, R vs S."""
    have = set(models)
    out = [(m, "Base", "vs Base") for m in models if m != "Base" and "Base" in have]
    for m in models:
        c = CONTROL.match(m)
        if c and f"HD-{c.group(2)}-{c.group(3)}" in have:
            out.append((m, f"HD-{c.group(2)}-{c.group(3)}", "control vs selection"))
        if m.startswith("HD-") and not m.startswith("HD-1.0-") and f"HD-1.0-{m[-1]}" in have:
            out.append((m, f"HD-1.0-{m[-1]}", "filtered vs full union"))
        if m.endswith("-R") and m[:-1] + "S" in have:
            out.append((m, m[:-1] + "S", "R vs S"))
        if m == "R" and "S" in have:
            out.append(("R", "S", "R vs S"))
    return out


def recipe_differences(groups: list[SeedGroup], seed: int = 0) -> pd.DataFrame:
    """Every comparison of `comparison_pairs` in each group, and the same model across groups (later vs
    first), at recipe level where the arms have seeds."""
    rows = []
    jobs = []
    for g in groups:
        models = g.models()
        jobs += [((g, a), (g, b), kind) for a, b, kind in comparison_pairs(models)]
    for g in groups[1:]:
        first = groups[0]
        shared = [m for m in g.models() if all(m in r.models() for r in first.runs)]
        jobs += [((g, m), (first, m), "across groups") for m in shared]
    for (ga, a), (gb, b), kind in jobs:
        for table, key, col, num, den in table_metrics():
            arms = group_arms([(ga, a), (gb, b)], key, num, den)
            if arms:
                rows.append(
                    _row(
                        table,
                        col,
                        arms,
                        [1.0, -1.0],
                        seed_for(seed, table, col, ga.label, a, gb.label, b),
                        group=ga.label,
                        model=a,
                        reference_group=gb.label,
                        reference=b,
                        comparison=kind,
                    )
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- where the variance comes from
def _variance_rows(g: SeedGroup, table: str, col: str, a: str, b: str, diff: np.ndarray) -> dict:
    """The variance components of one comparison's per-seed differences and each source's share at this design."""
    comp = variance_components(diff)
    parts = terms([Arm(diff)], [1.0]).parts()  # the shares `contrast` reports, one definition
    total = sum(parts.values())
    k, n = diff.shape
    return {
        "group": g.label,
        "table": table,
        "metric": col,
        "model": a,
        "reference": b,
        "seeds": k,
        "items": n,
        "var_seed": comp["seed"],
        "var_seed_upper80": comp["seed_upper"],
        "var_item": comp["item"],
        "var_residual": comp["residual"],
        "share_seeds": parts["seeds"] / total if total else float("nan"),
        "share_items": (parts["items"] + parts["residual"]) / total if total else float("nan"),
        "_components": comp,
    }


def _design_rows(row: dict, effect: float, minutes: tuple[float, float]) -> list[dict]:
    """The design of one comparison for `effect`: seeds per arm at several item counts, planned with the seed
    variance's estimate and with its 80 % upper bound, and their cost in minutes."""
    comp, b = row["_components"], row["reference"]
    train_min, eval_min = minutes
    kw = dict(
        items=sorted({*ITEM_GRID, row["items"]}),
        minutes_per_seed=train_min * (1 if b == "Base" else 2),
        minutes_per_item_and_seed=eval_min * (1 if b == "Base" else 2),
    )
    upper = design([comp], effect, seed_key="seed_upper", **kw)
    labels = {k: row[k] for k in ("group", "metric", "model", "reference")}
    return [
        {**labels, **d, "seeds_per_arm_upper80": u["seeds_per_arm"], "minutes_upper80": u.get("minutes")}
        for d, u in zip(design([comp], effect, **kw), upper)
    ]


def variance_split(
    groups: list[SeedGroup],
    minutes: dict | None = None,
    effects: dict | None = None,
    tables: tuple[str, ...] = ("table1_winobias",),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group, comparison and metric: the variance components of the per-seed differences (with an 80 % upper
    confidence bound on the seed variance), the share of the comparison's variance from seeds vs items at the
    group's design (as `contrast` reports it), and (design) the seeds per arm (at least 2) needed to detect
    `effects[metric]` at 80 % power for several item counts, planned with the seed variance's estimate and with
    its upper bound, with the cost in minutes (`minutes[group] = (training minutes per seed and arm, evaluation
    minutes per item, seed and model)`)."""
    effects = {**DESIGN_EFFECTS, **(effects or {})}
    split_rows, design_rows = [], []
    for g in groups:
        if g.k < 2:
            continue
        pairs = [(a, b) for a, b, kind in comparison_pairs(g.models()) if kind in ("vs Base", "control vs selection")]
        for table, key, col, num, den in table_metrics():
            if table not in tables or den:
                continue
            for a, b in pairs:
                arms = group_arms([(g, a), (g, b)], key, num, den)
                if not arms:
                    continue
                row = _variance_rows(g, table, col, a, b, arms[0].values - arms[1].values)  # Base: one row
                if col in effects:
                    design_rows += _design_rows(row, effects[col], (minutes or {}).get(g.label, (0.0, 0.0)))
                row.pop("_components")
                split_rows.append(row)
    return pd.DataFrame(split_rows), pd.DataFrame(design_rows)


def group_minutes(group: SeedGroup, table_key: str = "winobias") -> tuple[float, float]:
    """Measured cost of one more seed of a group: training minutes per model (its stages' wall time, mean over
    the group's runs and trained variants) and evaluation minutes per item and model (`table_key`'s seconds)."""
    import json

    train, per_item = [], []
    for r in group.runs:
        for v in r.params.train_variants:
            secs = []
            for stage in ("sft", "reward", "ppo", "dpo"):
                m = r.dir / "models" / v / stage / "manifest.json"
                if m.is_file():
                    man = json.loads(m.read_text())
                    if not man.get("reused_from"):
                        secs.append(man.get("wall_time_s") or 0)
            if secs:
                train.append(sum(secs))
        for x in r.models().values():
            res = x.get(table_key) or {}
            n = len((res.get("items") or {}).get("id", []))
            if res.get("seconds") and n and res.get("produced_by_run") == r.name:
                per_item.append(res["seconds"] / n)
    return (float(np.mean(train)) / 60 if train else 0.0, float(np.mean(per_item)) / 60 if per_item else 0.0)
