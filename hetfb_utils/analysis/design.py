"""Where a recipe comparison's variance comes from, and what a study needs to settle it.

* `variance_components`: a k seeds x n items table split into seed, item and residual variance (two-way random
  effects, method of moments), with a one-sided upper confidence bound on the seed variance (`seed_upper`: from 5
  seeds its 95 % range is about x0.36 to x8 of the estimate, so a design planned on the estimate alone is optimistic);
* `power`, `detectable_effect`: the noncentral t at the test's (Satterthwaite) degrees of freedom, the distribution
  the recipe-level test's statistic follows, not the normal (which promises 80 % power and delivers ~40-60 % at 3-5
  seeds when seeds dominate);
* `design`: the fewest seeds per arm (never fewer than 2: one seed has no recipe-level interval) and their cost in
  minutes to detect a difference at a given power, planned with the seed variance's estimate or its upper bound.
"""

from __future__ import annotations

import numpy as np

__all__ = ["design", "design_df", "detectable_effect", "power", "variance_components", "variance_of_mean"]


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


def design_df(components: list[dict], seeds: int, items: int, seed_key: str = "seed") -> float:
    """Satterthwaite degrees of freedom of a design (each trained arm `seeds` seeds on `items` items)."""
    parts = [(c.get(seed_key, 0.0) or 0.0) / seeds + c["residual"] / (seeds * items) for c in components]
    item = sum(c["item"] for c in components) / items
    total = sum(parts) + item
    den = sum(p * p / (seeds - 1) for p in parts) + (item * item / (items - 1) if items > 1 else 0.0)
    return float(total * total / den) if den > 0 else float("inf")


def power(effect: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Probability that a two-sided t test at `df` degrees of freedom calls a true difference `effect` real,
    when its standard error is `se` (the noncentral t)."""
    from scipy import stats as st

    if se <= 0:
        return 1.0 if effect else alpha
    df = df if np.isfinite(df) else 1e6
    q = st.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    if nc > q + 40:  # far beyond the critical value (scipy's noncentral t returns NaN out there)
        return 1.0
    p = float(st.nct.sf(q, df, nc) + st.nct.cdf(-q, df, nc))
    return p if np.isfinite(p) else float(st.norm.sf(q - nc) + st.norm.cdf(-q - nc))


def detectable_effect(se: float, df: float = float("inf"), power_: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference a comparison with standard error `se` (at `df` degrees of freedom) detects
    with probability `power_` (noncentral t)."""
    from scipy import stats as st
    from scipy.optimize import brentq

    if not se > 0:
        return 0.0
    q = st.t.ppf(1 - alpha / 2, df if np.isfinite(df) else 1e6)
    return float(brentq(lambda e: power(e, se, df, alpha) - power_, 0.0, (q + 30) * se))


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
    """How many seeds (at least 2: one seed has no recipe-level interval) and items detect a difference of
    `effect` at `power_` (two-sided `alpha`, noncentral t at the design's Satterthwaite df). `components`: the
    variance components of each trained arm of the comparison (one for "recipe vs Base": the components of
    the per-seed differences from Base; two for "recipe vs recipe"); `seed_key="seed_upper"` plans with the
    upper confidence bound of the seed variance instead of its estimate. For each item count, the fewest seeds
    per arm that reach the power, and the minutes that design costs (`minutes_per_seed` of training and
    `minutes_per_item_and_seed` of evaluation, per arm)."""
    items = items or [components[0]["items"]]
    out = []
    for n in items:
        need = None
        for k in range(2, max_seeds + 1):
            var = sum(variance_of_mean(c, k, n, seed_key) for c in components)
            if var == 0 or power(effect, np.sqrt(var), design_df(components, k, n, seed_key), alpha) >= power_:
                need = k
                break
        row = {"effect": effect, "items": n, "seeds_per_arm": need}
        if need is not None:
            arms = len(components)
            row["minutes"] = round(arms * need * (minutes_per_seed + n * minutes_per_item_and_seed), 1)
        out.append(row)
    return out
