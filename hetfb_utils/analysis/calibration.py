"""Simulated studies with a known truth: how often the kit's recipe-level intervals cover it.

Every setting in which the kit reports a recipe-level interval is simulated with the two-way model of
`multiboot` (value = mean + seed + item + residual; items shared by every arm):

| setting | arms | truth |
|---|---|---|
| `one arm` | one recipe, k seeds | its mean |
| `vs Base` | one recipe minus a fixed, untrained model scored on the same items | the difference of means |
| `paired` | two recipes trained on the same k seed labels (their seed effects correlated, rho 0.5) | 0 (equal means) |
| `unpaired` | two recipes, k seeds each, unrelated seeds | 0 |
| `across groups` | a recipe with k seeds against one with 5 from another group | 0 |

`coverage_table` runs each (setting, seeds, seed sd) cell `trials` times and reports the share of intervals that
cover the truth (for two-arm settings with truth 0: 1 - the false-alarm rate of an A/A comparison), with its Wilson
interval. `lognormal=True` draws skewed, non-negative item values (exp of a normal; the shape of Bias (Cluster)
and Bias (Entropy) per item). `tools/coverage.py` writes the table of `multiboot`'s docstring and
docs/measurements.md; `tests/test_multiboot.py` checks cells of it with fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..common.stats import proportion
from .multiboot import Arm, contrast

SETTINGS = ("one arm", "vs Base", "paired", "unpaired", "across groups")
SEED_SD = {"seeds dominate": 0.1, "balanced": 0.03, "negligible": 0.005}


def _values(rng, k: int, b: np.ndarray, sa: float, se: float, mu: float, seed_eff=None, lognormal=False):
    a = seed_eff if seed_eff is not None else rng.normal(0, sa, (k, 1))
    x = a + b[None, :] + rng.normal(0, se, (k, len(b)))
    return mu * np.exp(x) if lognormal else mu + x


def study(
    rng,
    setting: str,
    k: int,
    sa: float,
    *,
    n: int = 200,
    sb: float = 0.3,
    se: float = 0.2,
    rho: float = 0.5,
    lognormal: bool = False,
) -> tuple[list[Arm], list[float], float]:
    """One simulated study: (arms, weights, the truth of the weighted sum)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    b = rng.normal(0, sb, n)
    mu = 1.0
    # a recipe's value is its mean over seeds and the item population (exp(normal) has mean exp(var / 2))
    truth1 = mu * np.exp((sa**2 + sb**2 + se**2) / 2) if lognormal else mu
    a = Arm(_values(rng, k, b, sa, se, mu, lognormal=lognormal), seeds=[f"a{i}" for i in range(k)])
    if setting == "one arm":
        return [a], [1.0], truth1
    if setting == "vs Base":
        base = Arm(_values(rng, 1, b, 0.0, se, mu, seed_eff=np.zeros((1, 1)), lognormal=lognormal), fixed=True)
        truth_base = mu * np.exp((sb**2 + se**2) / 2) if lognormal else mu
        return [a, base], [1.0, -1.0], truth1 - truth_base
    if setting == "paired":  # the same seed labels; seed effects correlated `rho` between the arms
        ea = rng.normal(0, sa, (k, 1))
        ec = rho * ea + np.sqrt(1 - rho**2) * rng.normal(0, sa, (k, 1))
        labels = [f"s{i}" for i in range(k)]
        a = Arm(_values(rng, k, b, sa, se, mu, seed_eff=ea, lognormal=lognormal), seeds=labels)
        c = Arm(_values(rng, k, b, sa, se, mu, seed_eff=ec, lognormal=lognormal), seeds=labels)
        return [a, c], [1.0, -1.0], 0.0
    k2 = 5 if setting == "across groups" else k
    c = Arm(_values(rng, k2, b, sa, se, mu, lognormal=lognormal), seeds=[f"c{i}" for i in range(k2)])
    return [a, c], [1.0, -1.0], 0.0


def coverage(
    setting: str,
    k: int,
    sa: float,
    *,
    trials: int = 1000,
    seed: int = 0,
    method: str = "gpq",
    transform: str | None = None,
    n_draws: int = 4000,
    **kw,
) -> dict:
    """Share of `trials` simulated studies whose 95 % interval covers the truth, with its Wilson interval, the
    share that missed low (the truth above the interval) and the median interval width."""
    rng = np.random.default_rng(seed)
    hits = low = 0
    widths = []
    for t in range(trials):
        arms, w, truth = study(rng, setting, k, sa, **kw)
        r = contrast(arms, w, method=method, transform=transform, seed=t, n_draws=n_draws, n_boot=400)
        hits += r["lo"] <= truth <= r["hi"]
        low += truth > r["hi"]
        widths.append(r["hi"] - r["lo"])
    ci = proportion(hits, trials)
    return {
        "setting": setting,
        "seeds": k,
        "seed_sd": sa,
        "method": method + (f"+{transform}" if transform else ""),
        "trials": trials,
        "coverage": ci["value"],
        "lo": ci["lo"],
        "hi": ci["hi"],
        "missed_low": low / trials,
        "median_width": float(np.median(widths)),
    }


def coverage_table(
    settings=SETTINGS, seeds=(2, 3, 5), seed_sd: dict | None = None, methods=("gpq",), **kw
) -> pd.DataFrame:
    """`coverage` of every (setting, seeds, seed sd, method) cell."""
    rows = []
    for setting in settings:
        for k in seeds:
            for label, sa in (seed_sd or SEED_SD).items():
                for m in methods:
                    rows.append({**coverage(setting, k, sa, method=m, **kw), "regime": label})
    return pd.DataFrame(rows)


def coverage_on_items(
    pool: np.ndarray,
    k: int,
    seed_sd: float,
    *,
    base: np.ndarray | None = None,
    n: int | None = None,
    trials: int = 1000,
    seed: int = 0,
    transform: str | None = None,
    n_draws: int = 4000,
) -> dict:
    """Coverage on studies drawn from real per-item values (`pool`, e.g. one trained model's Bias (Cluster) per
    WinoBias pair): each study draws n items from the pool with replacement, so the items' skew is the real one;
    each of k seeds scales the values by exp(N(0, seed_sd)) (a seed effect of the metric's own, positive kind),
    and every item gets a small multiplicative residual. With `base` (Base's values on the same items) the study
    is "vs Base" (the truth: the pool's mean difference); else one arm (the truth: the pool's mean)."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool, dtype=np.float64)
    n = n or len(pool)
    hits = low = 0
    widths = []
    truth = pool.mean() * np.exp(seed_sd**2 / 2) * np.exp(0.1**2 / 2)
    if base is not None:
        truth -= np.asarray(base, dtype=np.float64).mean()
    for t in range(trials):
        idx = rng.integers(0, len(pool), n)
        x = pool[idx][None, :] * np.exp(rng.normal(0, seed_sd, (k, 1)) + rng.normal(0, 0.1, (k, n)))
        arms = [Arm(x)]
        if base is not None:
            arms.append(Arm(np.asarray(base, dtype=np.float64)[idx][None, :], fixed=True))
        r = contrast(arms, [1.0, -1.0][: len(arms)], transform=transform, seed=t, n_draws=n_draws)
        hits += r["lo"] <= truth <= r["hi"]
        low += truth > r["hi"]
        widths.append(r["hi"] - r["lo"])
    ci = proportion(hits, trials)
    return {
        "setting": "vs Base" if base is not None else "one arm",
        "seeds": k,
        "seed_sd": seed_sd,
        "items": n,
        "method": "gpq" + (f"+{transform}" if transform else ""),
        "trials": trials,
        "coverage": ci["value"],
        "lo": ci["lo"],
        "hi": ci["hi"],
        "missed_low": low / trials,
        "median_width": float(np.median(widths)),
    }
