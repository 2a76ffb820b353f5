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


def _values(rng, k: int, b: np.ndarray, sa: float, se: float, mu: float, seed_eff=None, lognormal=False, outlier=None):
    a = seed_eff if seed_eff is not None else rng.normal(0, sa, (k, 1))
    if outlier is not None:  # (rate, shift): each seed, with probability `rate`, is shifted by `shift`
        a = a + outlier[1] * (rng.random((k, 1)) < outlier[0])
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
    outlier: tuple[float, float] | None = None,
) -> tuple[list[Arm], list[float], float]:
    """One simulated study: (arms, weights, the truth of the weighted sum). `outlier` = (rate, shift): each seed of
    the first arm is, with probability `rate`, shifted by `shift` (a seed that does not behave: the truth stays the
    well-behaved recipe's)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    b = rng.normal(0, sb, n)
    mu = 1.0
    # a recipe's value is its mean over seeds and the item population (exp(normal) has mean exp(var / 2))
    truth1 = mu * np.exp((sa**2 + sb**2 + se**2) / 2) if lognormal else mu
    a = Arm(_values(rng, k, b, sa, se, mu, lognormal=lognormal, outlier=outlier), seeds=[f"a{i}" for i in range(k)])
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


def _difference_table(rng, k: int, b: np.ndarray, effect: float, seed_sd: float, resid_sd: float) -> np.ndarray:
    """k seeds' per-item differences (a recipe minus Base, or its paired twin): effect + seed + item + residual."""
    return effect + rng.normal(0, seed_sd, (k, 1)) + b[None, :] + rng.normal(0, resid_sd, (k, len(b)))


def replication_rates(
    effect: float,
    seed_sd: float,
    item_sd: float,
    resid_sd: float,
    *,
    k_orig: int = 6,
    k_new: int = 3,
    n: int = 400,
    holm_factor: float = 1.0,
    trials: int = 400,
    seed: int = 0,
) -> dict:
    """The replication rule (`replication.replication_status`) on simulated claims with a known truth `effect` (a
    "lower is better" claim: supported when the difference is below 0): `k_orig` seeds make the original verdict (its
    p times `holm_factor`), `k_new` new seeds on the same items are checked against it. Returns the share of worlds
    whose original verdict is supported, the share of those whose replication says "did not replicate", and the share
    of all worlds that end "replicated", each with its count."""
    from .claims import Claim, _one_sided, verdict
    from .replication import replication_status

    claim = Claim("sim", "simulated", "", (("A", "B"),), "Bias", "lower")
    rng = np.random.default_rng(seed)
    supported = failed = replicated = 0
    for _ in range(trials):
        b = rng.normal(0, item_sd, n)
        orig = Arm(_difference_table(rng, k_orig, b, effect, seed_sd, resid_sd), [("o", i) for i in range(k_orig)])
        new = Arm(_difference_table(rng, k_new, b, effect, seed_sd, resid_sd), [("n", i) for i in range(k_new)])
        r = contrast([orig], [1.0])
        p = min(1.0, 2 * min(_one_sided(claim, r)) * holm_factor)
        v = verdict(p, *_one_sided(claim, r))
        if v != "supported":
            continue
        supported += 1
        status = replication_status(v, contrast([orig, new], [1.0, -1.0]), contrast([new], [1.0]), claim, 0.0)
        failed += status == "did not replicate"
        replicated += status == "replicated"
    return {
        "effect": effect,
        "trials": trials,
        "original_supported": supported / trials,
        "did_not_replicate_given_supported": failed / supported if supported else float("nan"),
        "did_not_replicate_count": failed,
        "replicated": replicated / trials,
        "replicated_count": replicated,
    }
