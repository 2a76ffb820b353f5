"""Where a recipe comparison's variance comes from, and what a study needs to settle it, planned for the interval the
kit reports (the generalized pivotal interval of `multiboot`), not for a t test it does not run.

* `variance_components`: a k seeds x n items table split into seed, item and residual variance (two-way random
  effects, method of moments), with a one-sided upper confidence bound on the seed variance (`seed_upper`: from 5
  seeds its 95 % range is about x0.36 to x8 of the estimate, so a design planned on the estimate alone is optimistic);
* `power`: the probability that the kit's 95 % interval excludes 0 when the truth is `effect`, for a comparison whose
  mean squares have given expectations (`multiboot.Terms`). Under the two-way normal model the estimate is normal and
  independent of the mean squares, each a scaled chi-square; so the power is the mean, over simulated mean squares,
  of P(|estimate| beyond the interval's half-width those mean squares give). The half-width is the kit's own (the
  pivot's quantile, root-found per simulated study): nothing is approximated by a t distribution. Checked against
  studies simulated from raw tables through `multiboot.contrast` (`tests/test_multiboot.py`; docs/measurements.md);
* `detectable_effect`: the effect at which that power is 80 % (or `power_`), for an observed comparison (its mean
  squares taken as the truth) — `detectable_80` in the tables means 80 % for the kit's interval;
* `design`: the fewest seeds per arm (never fewer than 2) and their cost in minutes to detect a difference at a given
  power, for each item count, planned with the seed variance's estimate or its upper bound.
"""

from __future__ import annotations

import numpy as np

__all__ = ["design", "detectable_effect", "expected_terms", "power", "variance_components", "variance_of_mean"]

OUTER = 256  # simulated studies (mean squares) per power evaluation
INNER = 512  # variance draws of each simulated study's pivot


def variance_components(x: np.ndarray, upper: float = 0.8) -> dict:
    """Two-way random effects without replication (method of moments) of a k x n table of per-item values:
    seed variance (between training seeds), item variance (between evaluation items), residual (seed x item),
    and `seed_upper`, a one-sided `upper` confidence bound on the seed variance (chi-square on k - 1 df; the
    estimate from 5 seeds has a 95 % range of about x0.36 to x8). One seed: the seed variance is unknown."""
    from scipy import stats as st

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    k, n = x.shape
    grand = x.mean()
    rows, cols = x.mean(1), x.mean(0)
    if k < 2:
        return {
            "seed": float("nan"),
            "seed_upper": float("nan"),
            "item": float(np.var(cols, ddof=1)) if n > 1 else float("nan"),
            "residual": 0.0,
            "seeds": k,
            "items": n,
        }
    ms_seed = n * np.sum((rows - grand) ** 2) / (k - 1)
    ms_item = k * np.sum((cols - grand) ** 2) / (n - 1) if n > 1 else 0.0
    resid = x - rows[:, None] - cols[None, :] + grand
    ms_res = np.sum(resid**2) / ((k - 1) * (n - 1)) if n > 1 else 0.0
    return {
        "seed": float(max((ms_seed - ms_res) / n, 0.0)),
        "seed_upper": float(ms_seed * (k - 1) / st.chi2.ppf(1 - upper, k - 1) / n),
        "item": float(max((ms_item - ms_res) / k, 0.0)),
        "residual": float(ms_res),
        "seeds": k,
        "items": n,
    }


def variance_of_mean(comp: dict, seeds: int, items: int, seed_key: str = "seed") -> float:
    """Variance of a recipe's mean with `seeds` seeds and `items` items under the components `comp`."""
    seed = comp.get(seed_key, float("nan"))
    seed = 0.0 if not np.isfinite(seed) else seed
    return seed / seeds + comp["item"] / items + comp["residual"] / (seeds * items)


def expected_terms(comp: dict, seeds: int, items: int, seed_key: str = "seed"):
    """The `multiboot.Terms` of one k x n table (a recipe's per-seed differences from Base, or two recipes' paired
    differences) with the mean squares' expectations under the components: seed n var_a + var_e (k - 1 df),
    residual var_e, item var_b + var_e / k (n - 1 df)."""
    from .multiboot import Terms

    a = comp.get(seed_key, 0.0)
    a = 0.0 if not np.isfinite(a) else a
    b, e, k, n = comp["item"], comp["residual"], seeds, items
    return Terms(
        0.0,
        np.array([n * a + e, e, b + e / k]),
        np.array([k - 1.0, (k - 1.0) * (n - 1.0), n - 1.0]),
        np.array([1 / (k * n), 1 / (k * n), 1 / n]),
        ["seed", "residual", "item"],
        n,
    )


def _half_widths(t, alpha: float, outer: int, inner: int, seed: int) -> tuple[np.ndarray, float]:
    """The kit's interval's half-width in `outer` simulated studies whose mean squares are t.ms * chi2(df) / df, and
    the true variance of the estimate (the variance the expected mean squares give)."""
    from scipy import stats as st
    from scipy.special import ndtr
    from scipy.stats import qmc

    true_var = float(t.variance())
    if not len(t.ms) or true_var <= 0:
        return np.zeros(outer), max(true_var, 0.0)

    def chi(n: int, s: int) -> np.ndarray:  # chi2(df) / df at n scrambled Sobol points: [terms, n]
        u = qmc.Sobol(d=len(t.df), scramble=True, seed=s).random(n)
        return st.chi2.ppf(np.clip(u, 1e-12, 1 - 1e-12), t.df[None, :]).T / t.df[:, None]

    ms = t.ms[:, None] * chi(outer, seed + 1)  # the simulated studies' mean squares [terms, studies]
    scale = 1.0 / chi(inner, seed)  # each study's pivot redraws them as ms * df / chi2(df) [terms, draws]
    # each study's variance draws [studies, draws]: the terms' parts, then the item part clipped at 0 (`Terms.variance`)
    parts = {}
    for kind in ("seed", "residual", "item"):
        m = np.array([k == kind for k in t.kind])
        parts[kind] = np.einsum("t,ts,td->sd", t.coef[m], ms[m], scale[m]) if m.any() else 0.0
    sd = np.sqrt(parts["seed"] + np.maximum(parts["item"] - parts["residual"], 0.0))
    sd = np.broadcast_to(sd, (outer, inner)) if np.ndim(sd) == 2 else np.zeros((outer, inner))
    lo, hi = np.zeros(outer), 20.0 * sd.max(1) + 1e-12
    target = 1 - alpha / 2
    for _ in range(60):  # bisection, all studies at once: the pivot's quantile is where mean Phi(h / sd) = target
        mid = (lo + hi) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(sd > 0, ndtr(mid[:, None] / sd), 1.0).mean(1)
        lo, hi = np.where(f < target, mid, lo), np.where(f < target, hi, mid)
    return (lo + hi) / 2, true_var


def power(effect: float, t, alpha: float = 0.05, outer: int = OUTER, inner: int = INNER, seed: int = 0) -> float:
    """The probability that the kit's (1 - alpha) interval of a comparison with terms `t` (their mean squares taken
    as the expectations) excludes 0 when the true difference is `effect`."""
    from scipy.special import ndtr

    h, var = _half_widths(t, alpha, outer, inner, seed)
    if var <= 0:
        return 1.0 if effect else 0.0
    sd = np.sqrt(var)
    return float(np.mean(ndtr((abs(effect) - h) / sd) + ndtr((-abs(effect) - h) / sd)))


def detectable_effect(t, power_: float = 0.8, alpha: float = 0.05, seed: int = 0) -> float:
    """The smallest true difference the kit's interval detects with probability `power_`, for a comparison with terms
    `t` (`multiboot.terms` of the observed arms: their mean squares taken as the truth). Defined for every number of
    seeds: at two seeds the interval is wide, and the effect is large, not undefined."""
    from scipy.optimize import brentq
    from scipy.special import ndtr

    h, var = _half_widths(t, alpha, OUTER, INNER, seed)
    if var <= 0:
        return 0.0
    sd = np.sqrt(var)

    def f(e):
        return float(np.mean(ndtr((e - h) / sd) + ndtr((-e - h) / sd))) - power_

    hi = float(h.max() + 10 * sd)
    while f(hi) < 0:
        hi *= 2
    return float(brentq(f, 0.0, hi, xtol=1e-9 * max(hi, 1e-12)))


def design(
    components: list[dict],
    effect: float,
    *,
    power_: float = 0.8,
    alpha: float = 0.05,
    max_seeds: int = 30,
    items: list[int] | None = None,
    minutes_per_seed: float = 0.0,
    minutes_per_item_and_seed: float = 0.0,
    seed_key: str = "seed",
) -> list[dict]:
    """How many seeds (at least 2: one seed has no recipe-level interval) and items detect a difference of `effect` at
    `power_` with the kit's interval (`power`). `components`: the variance components of the comparison's per-seed
    differences (one table: "recipe vs Base", or two recipes on the same seeds); `seed_key="seed_upper"` plans with the
    upper confidence bound of the seed variance. For each item count, the fewest seeds per arm that reach the power,
    the power promised there, and the minutes that design costs (`minutes_per_seed` of training and
    `minutes_per_item_and_seed` of evaluation)."""
    (comp,) = components
    items = items or [comp["items"]]
    out = []
    for n in items:
        need, got = None, None
        for k in range(2, max_seeds + 1):
            got = power(effect, expected_terms(comp, k, n, seed_key), alpha)
            if got >= power_:
                need = k
                break
        row = {"effect": effect, "items": n, "seeds_per_arm": need, "power": got if need else None}
        if need is not None:
            row["minutes"] = round(need * (minutes_per_seed + n * minutes_per_item_and_seed), 1)
        out.append(row)
    return out
