"""Conclusions about recipes: the Multi-Bootstrap (`common.multiboot`) over the runs of a seed group.

A seed group is the runs of one recipe that differ only in `training.seed` (`make seeds`); they are scored on
the same evaluation items. For every metric of every table:

* `recipe_table`  each model's value with its interval: recipe-level (k seeds x n items) when the group has
  k >= 2 seeds, model-level (one training seed: the interval covers evaluation items only) otherwise;
* `recipe_differences`  each model vs Base, each control (`RAND/Q/DIV-f`) vs its `HD-f` twin, each filtered
  `HD-f` vs the full union `HD-1.0`, each `-R` vs its `-S`, and the same model in a later group vs the first
  (recipe A in one run vs recipe B in another: their seeds need not match);
* `aa_calibration`  runs of the same recipe compared with each other (seed vs seed with the item-level test,
  half of the seeds vs the other half with the Multi-Bootstrap): how often each test calls "different"
  when nothing differs but the seed;
* `variance_split`  per metric and comparison, the share of the variance from training seeds vs evaluation
  items, and the seeds x items needed to detect a given difference at 80 % power, with its cost in minutes.

Within a group the models of one training seed share it (the same LoRA initialisation and data-order stream):
they are compared seed by seed (MultiBERTs' paired seeds), which stays valid when they are unrelated (the
difference's variance is then estimated from k - 1 degrees of freedom instead of more). Across groups the
seeds are drawn apart.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..common.stats import paired, proportion, real_difference, seed_for
from ..evaluation.registry import item_tables
from .multiboot import (
    EXPLORATORY_BELOW,
    LOG_METRICS,
    Arm,
    contrast,
    design,
    detectable_effect,
    terms,
    variance_components,
)
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


def _arms(group_models: list[tuple[SeedGroup, str]], key: str, num: str, den: str | None) -> list[Arm] | None:
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
    return _arms([(group, model)] + ([(group, reference)] if reference else []), key, num, den)


def _row(table: str, metric: str, arms: list[Arm], weights: list[float], seed: int, **labels) -> dict:
    # a single arm of a non-negative, skewed metric: its interval on the log scale (multiboot.LOG_METRICS)
    transform = "log" if len(arms) == 1 and metric in LOG_METRICS else None
    r = contrast(arms, weights, seed=seed, transform=transform)
    seeds = r.pop("seeds")
    return {
        "table": table,
        "metric": metric,
        **labels,
        **r,
        "seeds": " vs ".join(map(str, seeds)),
        "conclusion": conclusion_kind(seeds, r["items"]),
        "detectable_80": detectable_effect(r["se"], r["df"]),
    }


def _metrics():
    for table, (key, cols) in item_tables().items():
        for col, num, den in cols:
            yield table, key, col, num, den


def recipe_table(groups: list[SeedGroup], seed: int = 0) -> pd.DataFrame:
    """Every model's value in every group, with its recipe-level (or one-seed) interval."""
    rows = []
    for g in groups:
        models = g.models()
        for table, key, col, num, den in _metrics():
            for m in models:
                arms = _arms([(g, m)], key, num, den)
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
        for table, key, col, num, den in _metrics():
            arms = _arms([(ga, a), (gb, b)], key, num, den)
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


# --------------------------------------------------------------------------- A/A calibration
AA_TESTS = {
    "item": "item-level (one seed vs one seed)",
    "unpaired": "recipe, unpaired (half the seeds vs the other half)",
    "paired": "recipe, paired (two recipes' models swapped within seed pairs)",
    "vs Base": "recipe vs Base (the sign of each seed's difference from Base flipped in half the seeds)",
}


def _aa_row(test: str, g: SeedGroup, model: str, metric: str, split: str, est, lo, hi, real) -> dict:
    return {
        "test": AA_TESTS[test],
        "group": g.label,
        "model": model,
        "metric": metric,
        "split": split,
        "estimate": est,
        "lo": lo,
        "hi": hi,
        "called_different": bool(real),
    }


def _balanced_flips(k: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(seeds used, seeds flipped): an even number of the k seeds (the first one left out when k is odd, each
    in turn), half of them flipped, each split once (the half without the first seed used)."""
    uses = [tuple(range(k))] if k % 2 == 0 else [tuple(i for i in range(k) if i != drop) for drop in range(k)]
    out = []
    for use in uses:
        for flip in itertools.combinations(use, len(use) // 2):
            if use[0] not in flip:
                out.append((use, flip))
    return out if k >= 2 else []


def aa_calibration(
    groups: list[SeedGroup], tables: tuple[str, ...] = ("table1_winobias",), seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Comparisons of real runs whose true difference is 0 by construction, in every setting the kit reports;
    how often each test calls them different (5 % is nominal):

    * item-level: one seed's model against another seed's, same recipe (what a one-seed comparison does);
    * unpaired: half of a recipe's seeds against the other half;
    * paired: two recipes trained on the same seeds, their models swapped in half of the seed pairs, so each
      arm holds as many models of one recipe as of the other (the pairing and its correlation are real);
    * vs Base: each seed's per-item difference from Base, its sign flipped in half of the seeds.

    In the paired and vs-Base A/A the balanced swap also cancels the item effects: they calibrate the
    seed-dominated regime, where few seeds are hardest. Returns (every comparison, the share each test called
    different with its Wilson interval)."""
    rows = []
    for g in groups:
        if g.k < 2:
            continue
        trained = [m for m in g.runs[0].models() if m != "Base" and all(m in r.models() for r in g.runs)]
        for table, key, col, num, den in _metrics():
            if table not in tables or den:
                continue
            arms = {m: _arms([(g, m)], key, num, None) for m in trained + ["Base"]}
            arms = {m: a[0] for m, a in arms.items() if a}
            for m in [m for m in trained if m in arms]:
                rows += _aa_one_recipe(g, m, col, arms[m], seed)
                if "Base" in arms:
                    d = Arm(arms[m].values - arms["Base"].values, arms[m].seeds)
                    rows += _aa_flips(g, m, col, d, None, "vs Base", seed)
            for m1, m2 in itertools.combinations([m for m in trained if m in arms], 2):
                rows += _aa_flips(g, f"{m1} / {m2}", col, arms[m1], arms[m2], "paired", seed)
    return _aa_summary(pd.DataFrame(rows))


def _aa_one_recipe(g: SeedGroup, m: str, col: str, a: Arm, seed: int) -> list[dict]:
    """Seed against seed (item-level) and half against half (unpaired) of one recipe."""
    rows = []
    for i, j in itertools.combinations(range(a.k), 2):
        d = paired(a.values[i], a.values[j], seed=seed_for(seed, "aa", g.label, col, m, i, j))
        real = real_difference(d["delta"], d["delta_lo"], d["delta_hi"])
        split = f"s{g.seeds[i]} vs s{g.seeds[j]}"
        rows.append(_aa_row("item", g, m, col, split, d["delta"], d["delta_lo"], d["delta_hi"], real))
    for half in _splits(a.k):
        rest = [s for s in range(a.k) if s not in half]
        sub = [Arm(a.values[list(ix)], [a.seeds[s] for s in ix]) for ix in (half, rest)]
        r = contrast(sub, [1.0, -1.0], seed=seed_for(seed, "aa-mb", g.label, col, m, half))
        split = " ".join(f"s{g.seeds[s]}" for s in half) + " vs " + " ".join(f"s{g.seeds[s]}" for s in rest)
        rows.append(_aa_row("unpaired", g, m, col, split, r["estimate"], r["lo"], r["hi"], r["real"]))
    return rows


def _aa_flips(g: SeedGroup, m: str, col: str, a: Arm, b: Arm | None, test: str, seed: int) -> list[dict]:
    """Balanced swaps within seed pairs: `b` given, a's and b's models of the flipped seeds change arms (paired);
    else the flipped seeds' rows of `a` change sign (vs Base, `a` the differences from Base)."""
    rows = []
    for use, flip in _balanced_flips(a.k):
        labels = [a.seeds[s] for s in use]
        sign = np.array([-1.0 if s in flip else 1.0 for s in use])[:, None]
        if b is None:
            arms, w = [Arm(sign * a.values[list(use)], labels)], [1.0]
        else:
            x, y = a.values[list(use)], b.values[list(use)]
            arms = [Arm(np.where(sign > 0, x, y), labels), Arm(np.where(sign > 0, y, x), labels)]
            w = [1.0, -1.0]
        r = contrast(arms, w, seed=seed_for(seed, "aa-flip", test, g.label, col, m, use, flip))
        split = f"{len(use)} seeds, flipped " + " ".join(f"s{g.seeds[s]}" for s in flip)
        rows.append(_aa_row(test, g, m, col, split, r["estimate"], r["lo"], r["hi"], r["real"]))
    return rows


def _aa_summary(every: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = []
    for test, d in every.groupby("test", sort=False) if len(every) else []:
        ci = proportion(int(d["called_different"].sum()), len(d))
        summary.append(
            {
                "test": test,
                "comparisons": len(d),
                "called_different": int(d["called_different"].sum()),
                "false_alarm_rate": ci["value"],
                "lo": ci["lo"],
                "hi": ci["hi"],
                "nominal": 0.05,
            }
        )
    return every, pd.DataFrame(summary)


def _splits(k: int) -> list[tuple[int, ...]]:
    """Splits of k seeds into two halves of >= 2 each (each split once: the half holding seed 0 when equal)."""
    if k < 4:
        return []
    half = k // 2
    return [c for c in itertools.combinations(range(k), half) if k - half != half or 0 in c]


# --------------------------------------------------------------------------- where the variance comes from
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
        models = g.models()
        pairs = [(a, b) for a, b, kind in comparison_pairs(models) if kind in ("vs Base", "control vs selection")]
        for table, key, col, num, den in _metrics():
            if table not in tables or den:
                continue
            for a, b in pairs:
                arms = _arms([(g, a), (g, b)], key, num, den)
                if not arms:
                    continue
                diff = arms[0].values - arms[1].values  # Base is one row: broadcast
                comp = variance_components(diff)
                parts = terms([Arm(diff)], [1.0]).parts()  # the shares `contrast` reports, one definition
                total = sum(parts.values())
                k, n = diff.shape
                split_rows.append(
                    {
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
                    }
                )
                if col not in effects:
                    continue
                train_min, eval_min = (minutes or {}).get(g.label, (0.0, 0.0))
                kw = dict(
                    items=sorted({*ITEM_GRID, n}),
                    minutes_per_seed=train_min * (1 if b == "Base" else 2),
                    minutes_per_item_and_seed=eval_min * (1 if b == "Base" else 2),
                )
                upper = design([comp], effects[col], seed_key="seed_upper", **kw)
                for row, up in zip(design([comp], effects[col], **kw), upper):
                    design_rows.append(
                        {
                            "group": g.label,
                            "metric": col,
                            "model": a,
                            "reference": b,
                            **row,
                            "seeds_per_arm_upper80": up["seeds_per_arm"],
                            "minutes_upper80": up.get("minutes"),
                        }
                    )
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
