"""A/A calibration on real runs: comparisons whose true difference is 0 by construction, in every setting the kit
reports (item-level, unpaired, paired, vs Base), and how often each test calls them different (5 % is nominal).

Every recipe-level A/A is a **split half**: the seeds of a group in two halves (two seeds or more each), a quantity on
one half against the same quantity on the other: a recipe's value (unpaired), its difference from Base (vs Base), the
difference of two recipes trained on the same seeds (paired). The truth is 0 and the halves' seeds are independent, so
an interval that is too narrow raises the false alarms above 5 % (`tests/test_verdicts.py` breaks one on purpose).
The kit used to flip the signs of half the seeds' differences from Base instead: that adds the recipe's true effect to
the seed mean square, so at a real effect the interval was several times too wide and that A/A could not fail
(0 false alarms at the effects of claims C1, C10, C11, with intervals 6-8x too wide); flipping centred deviations
removes the effect but makes the rows negatively correlated, and under-states their variance by (k - 2) / (k - 1).
Both are gone. The splits of one group share seeds, so the comparisons are not independent: the Wilson interval of a
rate treats them as if they were, and is too narrow (the summary says so)."""

from __future__ import annotations

import itertools

import pandas as pd

from ..common.stats import paired, proportion, real_difference, seed_for
from .multiboot import Arm, contrast
from .recipes import group_arms, table_metrics
from .runs import SeedGroup

AA_TESTS = {
    "item": "item-level (one seed vs one seed)",
    "unpaired": "recipe, unpaired (half the seeds vs the other half)",
    "paired": "recipe, paired (two recipes' difference on half the seeds vs on the other half)",
    "vs Base": "recipe vs Base (the difference from Base on half the seeds vs on the other half)",
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


def aa_calibration(
    groups: list[SeedGroup], tables: tuple[str, ...] = ("table1_winobias",), seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Comparisons of real runs whose true difference is 0 by construction, in every setting the kit reports;
    how often each test calls them different (5 % is nominal):

    * item-level: one seed's model against another seed's, same recipe (what a one-seed comparison does);
    * unpaired: half of a recipe's seeds against the other half;
    * paired: two recipes trained on the same seeds: their difference on half of the seeds against the other half;
    * vs Base: a recipe's per-item difference from Base on half of the seeds against the other half.

    Returns (every comparison, the share each test called different with its Wilson interval)."""
    rows = []
    for g in groups:
        if g.k < 2:
            continue
        trained = [m for m in g.runs[0].models() if m != "Base" and all(m in r.models() for r in g.runs)]
        for table, key, col, num, den in table_metrics():
            if table not in tables or den:
                continue
            arms = {m: group_arms([(g, m)], key, num, None) for m in trained + ["Base"]}
            arms = {m: a[0] for m, a in arms.items() if a}
            for m in [m for m in trained if m in arms]:
                rows += _aa_one_recipe(g, m, col, arms[m], seed)
                if "Base" in arms:
                    d = Arm(arms[m].values - arms["Base"].values, arms[m].seeds)
                    rows += _aa_halves(g, m, col, d, "vs Base", seed)
            for m1, m2 in itertools.combinations([m for m in trained if m in arms], 2):
                d = Arm(arms[m1].values - arms[m2].values, arms[m1].seeds)
                rows += _aa_halves(g, f"{m1} / {m2}", col, d, "paired", seed)
    return _aa_summary(pd.DataFrame(rows))


def _aa_one_recipe(g: SeedGroup, m: str, col: str, a: Arm, seed: int) -> list[dict]:
    """Seed against seed (item-level) and half against half (unpaired) of one recipe."""
    rows = []
    for i, j in itertools.combinations(range(a.k), 2):
        d = paired(a.values[i], a.values[j], seed=seed_for(seed, "aa", g.label, col, m, i, j))
        real = real_difference(d["delta"], d["delta_lo"], d["delta_hi"])
        split = f"s{g.seeds[i]} vs s{g.seeds[j]}"
        rows.append(_aa_row("item", g, m, col, split, d["delta"], d["delta_lo"], d["delta_hi"], real))
    return rows + _aa_halves(g, m, col, a, "unpaired", seed)


def _aa_halves(g: SeedGroup, m: str, col: str, a: Arm, test: str, seed: int) -> list[dict]:
    """Half of the seeds against the other half (`_splits`) of one table (a recipe's values, or a difference)."""
    rows = []
    for half in _splits(a.k):
        rest = [s for s in range(a.k) if s not in half]
        sub = [Arm(a.values[list(ix)], [a.seeds[s] for s in ix]) for ix in (half, rest)]
        r = contrast(sub, [1.0, -1.0], seed=seed_for(seed, "aa-mb", test, g.label, col, m, half))
        split = " ".join(f"s{g.seeds[s]}" for s in half) + " vs " + " ".join(f"s{g.seeds[s]}" for s in rest)
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
                "note": "the comparisons share seeds (and runs): not independent; the Wilson interval treats "
                "them as independent and is too narrow",
            }
        )
    return every, pd.DataFrame(summary)


def _splits(k: int) -> list[tuple[int, ...]]:
    """Splits of k seeds into two halves of >= 2 each (each split once: the half holding seed 0 when equal)."""
    if k < 4:
        return []
    half = k // 2
    return [c for c in itertools.combinations(range(k), half) if k - half != half or 0 in c]
