"""Statistics for "is model A better than model B?": confidence intervals over evaluation items and
paired differences, through scipy (no hand-rolled resampling).

* `interval`   seeded bootstrap CI of a mean (or of a ratio of sums) over items
  (`scipy.stats.bootstrap`, BCa);
* `paired`     the difference of two models scored on the same items: paired bootstrap CI
  (`scipy.stats.bootstrap(paired=True)`) and a two-sided sign-flip permutation p-value
  (`scipy.stats.permutation_test(permutation_type="samples")`);
* `proportion` a k-of-n accuracy: Wilson CI and the p-value against chance
  (`scipy.stats.binomtest`), for the reward models and the label audit;
* `seed_summary` mean ± sd over training seeds.

Every function is deterministic for its `seed`. Items that are all equal give a zero-width interval
(the bootstrap distribution is a point) instead of scipy's NaN and warning.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

N_RESAMPLES = 2000  # bootstrap resamples per interval
N_PERMUTATIONS = 4999  # sign flips per paired p-value
CONFIDENCE = 0.95


def seed_for(*parts) -> int:
    """A stable seed from names (run seed, table, metric, model): the same interval every time."""
    return int(hashlib.sha1(repr(parts).encode()).hexdigest()[:8], 16)


def _stat(num: np.ndarray, den: np.ndarray | None):
    """The statistic over items: mean(num), or sum(num) / sum(den) (e.g. IFEval instruction-level
    accuracy: instructions followed / instructions, resampled by prompt)."""
    if den is None:
        return lambda x, axis=-1: np.mean(x, axis=axis)
    return lambda x, d, axis=-1: np.sum(x, axis=axis) / np.sum(d, axis=axis)


def _clean(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def point(num, den=None) -> float:
    """The statistic over items without an interval: mean(num), or sum(num) / sum(den)."""
    num = _clean(num)
    if not len(num):
        return float("nan")
    return float(np.mean(num)) if den is None else float(np.sum(num) / np.sum(_clean(den)))


def interval(
    num, den=None, *, seed: int = 0, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(value, lo, hi): the statistic over items and its bootstrap confidence interval."""
    from scipy import stats as scipy_stats
    from scipy.stats import bootstrap

    num = _clean(num)
    value = point(num, den)
    if len(num) < 2:
        return value, float("nan"), float("nan")
    data = (num,) if den is None else (num, _clean(den))
    if np.ptp(num) == 0 and (den is None or np.ptp(data[1]) == 0):
        return value, value, value
    for method in ("BCa", "percentile"):  # BCa is undefined on nearly constant items: then the percentile one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", getattr(scipy_stats, "DegenerateDataWarning", RuntimeWarning))
            res = bootstrap(
                data,
                _stat(num, den),
                paired=den is not None,
                vectorized=True,
                method=method,
                n_resamples=n_resamples,
                confidence_level=confidence,
                rng=np.random.default_rng(seed),
            )
        lo, hi = res.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            break
    return value, float(lo), float(hi)


def paired(
    a,
    b,
    den_a=None,
    den_b=None,
    *,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    n_permutations: int = N_PERMUTATIONS,
    confidence: float = CONFIDENCE,
) -> dict:
    """Model A minus model B on the same items (aligned arrays): delta, its paired bootstrap CI and
    the two-sided sign-flip permutation p-value (H0: A and B are exchangeable on every item)."""
    from scipy.stats import bootstrap, permutation_test

    a, b = _clean(a), _clean(b)
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same items: {len(a)} vs {len(b)} values")
    delta = point(a, den_a) - point(b, den_b)
    if len(a) < 2:
        return {"delta": delta, "delta_lo": float("nan"), "delta_hi": float("nan"), "p": float("nan")}
    if den_a is None:
        data, stat = (a, b), (lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis))
    else:
        data = (a, b, _clean(den_a), _clean(den_b))
        stat = lambda x, y, dx, dy, axis=-1: (
            np.sum(x, axis=axis) / np.sum(dx, axis=axis) - np.sum(y, axis=axis) / np.sum(dy, axis=axis)
        )
    if np.array_equal(a, b) and (den_a is None or np.array_equal(data[2], data[3])):
        return {"delta": delta, "delta_lo": delta, "delta_hi": delta, "p": 1.0}
    ci = bootstrap(
        data,
        stat,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=n_resamples,
        confidence_level=confidence,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    samples, statistic = _flip_test(a, b, data, stat)
    p = permutation_test(
        samples,
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="two-sided",
        rng=np.random.default_rng(seed + 1),
    ).pvalue
    return {"delta": delta, "delta_lo": float(ci.low), "delta_hi": float(ci.high), "p": float(p)}


def _flip_test(a, b, data, stat):
    """(samples, statistic) of the sign-flip test of A - B for `scipy.stats.permutation_test`: for a mean, swapping A
    and B inside each item (`permutation_type="samples"`); for a ratio of sums, the signs of item numbers 1..n flipped,
    a flipped item swapping A and B in numerator and denominator."""
    if len(data) == 2:
        return (a, b), stat
    num = np.stack([a, b, data[2], data[3]])

    def swapped(s, axis=-1):
        flip = s < 0
        i = np.abs(s).astype(int) - 1
        x, y, dx, dy = (np.where(flip, num[(j + 1) % 2 + 2 * (j // 2)][i], num[j][i]) for j in range(4))
        return stat(x, y, dx, dy, axis=axis)

    return (np.arange(1, len(a) + 1),), swapped


TOLERANCE = 1e-5  # |difference| below this is the scorer's float noise (batch layouts), never called real


def excludes_zero(lo: float, hi: float) -> bool:
    """Does the interval [lo, hi] exclude 0 (both ends finite)?"""
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


def real_difference(estimate: float, lo: float, hi: float, tolerance: float = TOLERANCE) -> bool:
    """A difference the kit calls real: its interval excludes 0 and it is larger than the scorer's numerical
    tolerance (two runs of the same model in other batch layouts differ by ~1e-7 on log-probability metrics)."""
    return bool(excludes_zero(lo, hi) and abs(estimate) > tolerance)


def proportion(k: int, n: int, confidence: float = CONFIDENCE) -> dict:
    """k correct of n: accuracy, Wilson CI, one-sided p-value against chance (0.5), and whether the
    interval covers 0.5 (`at_chance`)."""
    from scipy.stats import binomtest

    if n <= 0:
        return {
            "value": float("nan"),
            "lo": float("nan"),
            "hi": float("nan"),
            "p": float("nan"),
            "n": 0,
            "at_chance": True,
        }
    t = binomtest(int(k), int(n), 0.5, alternative="two-sided")
    ci = t.proportion_ci(confidence_level=confidence, method="wilson")
    p_greater = binomtest(int(k), int(n), 0.5, alternative="greater").pvalue
    return {
        "value": k / n,
        "lo": float(ci.low),
        "hi": float(ci.high),
        "p": float(p_greater),
        "n": int(n),
        "at_chance": bool(ci.low <= 0.5 <= ci.high),
    }


def seed_summary(values) -> dict:
    """Mean ± sample sd over seeds (one value per seed), and the range."""
    v = _clean(values)
    v = v[np.isfinite(v)]
    return {
        "mean": float(np.mean(v)) if len(v) else float("nan"),
        "sd": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        "min": float(np.min(v)) if len(v) else float("nan"),
        "max": float(np.max(v)) if len(v) else float("nan"),
        "seeds": int(len(v)),
    }


def fmt_ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """`0.415 [0.38, 0.45]`: `digits` significant digits (a missing interval prints the value alone)."""
    if value is None or not np.isfinite(value):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} [{lo:.{digits - 1}g}, {hi:.{digits - 1}g}]"


def holm(p: list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (scipy's `false_discovery_control` is BH; Holm is written here)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj
