"""A/A calibration on real runs: comparisons whose true difference is 0 by construction, in every setting the kit
reports (item-level, unpaired, paired, vs Base), and how often each test calls them different (5 % is nominal)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..common.stats import paired, proportion, real_difference, seed_for
from .multiboot import Arm, contrast
from .recipes import group_arms, table_metrics
from .runs import SeedGroup

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
        for table, key, col, num, den in table_metrics():
            if table not in tables or den:
                continue
            arms = {m: group_arms([(g, m)], key, num, None) for m in trained + ["Base"]}
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
