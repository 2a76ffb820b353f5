"""Statements about a training *recipe*, not one trained model: the Multi-Bootstrap.

Sellam et al., "The MultiBERTs: BERT Reproductions for Robustness Analysis", ICLR 2022 (§3, "Multi-Bootstrap";
the authors' implementation is `language/multiberts/multibootstrap.py` in google-research/language). A recipe
(data mix, selection, algorithm) evaluated with k training seeds on n evaluation items has two sources of
randomness: which models training happened to produce (seeds) and which items the evaluation happened to use.
An interval over items alone speaks about the k models; one about the recipe resamples both, jointly:

* every bootstrap replicate draws n items with replacement, **the same draw for every arm** (paired designs
  stay paired), and k seeds with replacement per arm (the same draw for arms trained on the same seeds, e.g. an
  `-R` model and the `-S` model it was built on: MultiBERTs' `paired_seeds`; independent draws otherwise);
* an arm's statistic is the mean over its drawn seeds of the statistic over the drawn items (a mean of per-item
  values, or a ratio of sums); a comparison is the difference of two arms in the same replicate;
* a model that is not trained (Base) is one fixed row: it has no seed variance.

What is ours (and why): MultiBERTs had 25 seeds; a kit run has 2-5. With so few, the percentile interval of the
joint replicates is too narrow (the bootstrap of k seeds sees (k-1)/k of their variance, and its quantiles ignore
how few seeds estimate it), and the joint replicates count the seed x item residual three times (through each
seed's mean over the items, through each item's mean over the seeds, and through the product of the two draws).
So by default (`method="t"`) the replicates' variance is read factor by factor: the seed part from the
replicates with the items held fixed (seed deviations rescaled by sqrt(k/(k-1)): unbiased), the item part from
the replicates with the seeds held fixed, less the residual that both parts count (`variance_components`); the
interval is `estimate ± t(ν) × SE`, ν a Satterthwaite combination of the seeds' degrees of freedom (Welch over
arms) and the items' (n - 1), and the two-sided p-value is that t test's. `method="percentile"` is MultiBERTs'
own reading (no rescaling, quantiles of the joint replicates, p = twice the share of replicates beyond 0).
`tests/test_multiboot.py` measures both on simulated data with known seed and item effects: coverage, and the
false-alarm rate of an A/A comparison (two arms of one recipe).

`variance_components` splits a k x n table into seed, item and residual variance (two-way random effects,
method of moments); `design` says how many seeds and items detect a difference at a given power.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
TOLERANCE = 1e-5  # |difference| below this is the scorer's float noise (batch layouts), never called real


@dataclass
class Arm:
    """One recipe (or Base) on the shared items: `values[s, j]` the per-item value of seed s on item j (a
    numerator when `den` is given: the statistic is then sum(values) / sum(den) over items)."""

    values: np.ndarray
    seeds: list = field(default_factory=list)
    den: np.ndarray | None = None
    fixed: bool = False  # not trained (Base): one row, no seed variance

    def __post_init__(self):
        self.values = np.atleast_2d(np.asarray(self.values, dtype=np.float64))
        if self.den is not None:
            self.den = np.atleast_2d(np.asarray(self.den, dtype=np.float64))
        if not self.seeds:
            self.seeds = list(range(self.k))
        if len(self.seeds) != self.k:
            raise ValueError(f"{len(self.seeds)} seed labels for {self.k} rows of values")

    @property
    def k(self) -> int:
        return self.values.shape[0]

    @property
    def n(self) -> int:
        return self.values.shape[1]

    @property
    def seed_resampled(self) -> bool:
        return not self.fixed and self.k > 1

    def per_seed(self, item_w: np.ndarray | None = None) -> np.ndarray:
        """The statistic of each seed over the items (weighted by counts `item_w` [B, n]): [B, k] or [k]."""
        if item_w is None:
            return self.values.mean(1) if self.den is None else self.values.sum(1) / self.den.sum(1)
        if self.den is None:
            return item_w @ self.values.T / item_w.sum(1, keepdims=True)
        return (item_w @ self.values.T) / (item_w @ self.den.T)

    def estimate(self) -> float:
        return float(np.mean(self.per_seed()))

    def rescaled(self) -> Arm:
        """Seed deviations (per item, from the mean over seeds) scaled by sqrt(k/(k-1)): the same estimate, and
        a bootstrap over its k seeds whose variance is unbiased for the seed variance of the mean."""
        if not self.seed_resampled:
            return self
        mean = self.values.mean(0, keepdims=True)
        return Arm(mean + np.sqrt(self.k / (self.k - 1)) * (self.values - mean), list(self.seeds), self.den, self.fixed)


def _seed_draws(arms: list[Arm], n_boot: int, rng, resample: bool) -> list[np.ndarray]:
    """Seed counts [B, k] per arm: one shared draw per set of arms with the same seed labels (paired seeds)."""
    shared: dict[tuple, np.ndarray] = {}
    out = []
    for a in arms:
        if not (resample and a.seed_resampled):
            out.append(np.ones((n_boot, a.k)))
            continue
        key = tuple(a.seeds)
        if key not in shared:
            shared[key] = rng.multinomial(a.k, np.full(a.k, 1 / a.k), size=n_boot).astype(np.float64)
        out.append(shared[key])
    return out


def replicates(
    arms: list[Arm],
    n_boot: int = N_BOOT,
    seed: int = 0,
    resample_seeds: bool = True,
    rescale: bool = True,
    resample_items: bool = True,
) -> np.ndarray:
    """[n_boot, arms] bootstrap replicates of each arm's statistic: items drawn once per replicate for every
    arm, seeds per arm (shared between arms with the same seed labels); either factor can be held fixed."""
    n = {a.n for a in arms}
    if len(n) != 1:
        raise ValueError(f"arms must be scored on the same items, got item counts {sorted(n)}")
    n = n.pop()
    rng = np.random.default_rng(seed)
    item_w = rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(np.float64)
    if not resample_items:
        item_w = np.ones_like(item_w)
    arms = [a.rescaled() if rescale else a for a in arms]
    out = np.empty((n_boot, len(arms)))
    for j, (a, seed_w) in enumerate(zip(arms, _seed_draws(arms, n_boot, rng, resample_seeds))):
        out[:, j] = (seed_w * a.per_seed(item_w)).sum(1) / seed_w.sum(1)
    return out


def _seed_groups(arms: list[Arm], weights: list[float]) -> list[np.ndarray]:
    """The seed-varying part of sum(w_a * arm_a), as per-seed x per-item tables: arms on the same seeds are one
    table (their combination seed by seed), fixed or single-seed arms none."""
    groups: dict[tuple, np.ndarray] = {}
    for a, w in zip(arms, weights):
        if a.seed_resampled:
            key = tuple(a.seeds)
            x = a.values if a.den is None else a.values / a.den.mean(0, keepdims=True)  # ratio: per-item share
            groups[key] = groups.get(key, 0) + w * x
    return list(groups.values())


def _seed_df(groups: list[np.ndarray]) -> float:
    """Welch-Satterthwaite degrees of freedom of the seed part (one term per seed group); inf when none."""
    terms = [(np.var(g.mean(1), ddof=1) / len(g), len(g) - 1) for g in groups]
    num = sum(c for c, _ in terms) ** 2
    den = sum(c * c / d for c, d in terms)
    return float(num / den) if den > 0 else float("inf")


def _recounted(groups: list[np.ndarray]) -> float:
    """The seed x item residual variance that both one-factor bootstraps count (it is in every seed's mean over
    its items, and in every item's mean over its seeds): sum over seed groups of residual / (k n)."""
    out = 0.0
    for g in groups:
        comp = variance_components(g)
        out += comp["residual"] / (comp["seeds"] * comp["items"])
    return out


def contrast(
    arms: list[Arm],
    weights: list[float],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    method: str = "t",
    confidence: float = CONFIDENCE,
    tolerance: float = TOLERANCE,
) -> dict:
    """A linear combination of arms (one arm with weight 1: its value; two with 1, -1: their difference) at
    recipe level. Returns estimate, lo, hi, p (two-sided), se, df, the variance shares of seeds and items, the
    seeds per arm, and `real`: the interval excludes 0 and |estimate| > `tolerance`."""
    from scipy import stats as st

    if method not in ("t", "percentile"):
        raise ValueError(f"method must be 't' or 'percentile', got {method!r}")
    w = np.asarray(weights, dtype=np.float64)
    est = float(sum(wi * a.estimate() for wi, a in zip(w, arms)))
    seeds_only = replicates(arms, n_boot, seed, resample_items=False) @ w
    items_only = replicates(arms, n_boot, seed, resample_seeds=False) @ w
    groups = _seed_groups(arms, list(w))
    v_seeds = float(np.var(seeds_only, ddof=1))
    v_items = max(float(np.var(items_only, ddof=1)) - _recounted(groups), 0.0)
    v_tot = v_seeds + v_items
    nu_seeds, nu_items = _seed_df(groups), arms[0].n - 1
    parts = (v_seeds**2 / nu_seeds if np.isfinite(nu_seeds) else 0.0) + (v_items**2 / nu_items if nu_items else 0.0)
    df = float(v_tot**2 / parts) if parts > 0 else float("inf")
    se = float(np.sqrt(v_tot))
    alpha = 1 - confidence
    if se == 0:
        lo = hi = est
        p = 1.0 if abs(est) <= tolerance else 0.0
    elif method == "t":
        q = st.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else st.norm.ppf(1 - alpha / 2)
        lo, hi = est - q * se, est + q * se
        p = float(2 * (st.t.sf(abs(est) / se, df) if np.isfinite(df) else st.norm.sf(abs(est) / se)))
    else:  # percentile: MultiBERTs' reading of the joint replicates, as is (no rescaling)
        both = replicates(arms, n_boot, seed, rescale=False) @ w
        lo, hi = (float(x) for x in np.quantile(both, [alpha / 2, 1 - alpha / 2]))
        p = float(max(2 * min(np.mean(both <= 0), np.mean(both >= 0)), 1 / n_boot))
    return {
        "estimate": est,
        "lo": float(lo),
        "hi": float(hi),
        "p": min(float(p), 1.0),
        "se": se,
        "df": df,
        "seed_share": v_seeds / v_tot if v_tot > 0 else 0.0,
        "item_share": min(v_items / v_tot, 1.0) if v_tot > 0 else 0.0,
        "seeds": [a.k if a.seed_resampled else (1 if not a.fixed else 0) for a in arms],
        "items": arms[0].n,
        "real": real_difference(est, lo, hi, tolerance),
    }


def real_difference(estimate: float, lo: float, hi: float, tolerance: float = TOLERANCE) -> bool:
    """A difference the kit calls real: its interval excludes 0 and it is larger than the scorer's numerical
    tolerance (two runs of the same model in other batch layouts differ by ~1e-7 on log-probability metrics)."""
    ok = np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0)
    return bool(ok and abs(estimate) > tolerance)


# --------------------------------------------------------------------------- where the variance comes from
def variance_components(x: np.ndarray) -> dict:
    """Two-way random effects without replication (method of moments) of a k x n table of per-item values:
    seed variance (between training seeds), item variance (between evaluation items), residual (seed x item).
    With one seed the seed variance is unknown (NaN) and the residual is folded into the items'."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    k, n = x.shape
    grand = x.mean()
    rows, cols = x.mean(1), x.mean(0)
    if k < 2:
        return {
            "seed": float("nan"),
            "item": float(np.var(cols, ddof=1)) if n > 1 else float("nan"),
            "residual": 0.0,
            "seeds": k,
            "items": n,
        }
    ms_seed = n * np.sum((rows - grand) ** 2) / (k - 1)
    ms_item = k * np.sum((cols - grand) ** 2) / (n - 1)
    resid = x - rows[:, None] - cols[None, :] + grand
    ms_res = np.sum(resid**2) / ((k - 1) * (n - 1))
    return {
        "seed": float(max((ms_seed - ms_res) / n, 0.0)),
        "item": float(max((ms_item - ms_res) / k, 0.0)),
        "residual": float(ms_res),
        "seeds": k,
        "items": n,
    }


def variance_of_mean(comp: dict, seeds: int, items: int) -> float:
    """Variance of a recipe's mean with `seeds` seeds and `items` items under the components `comp`."""
    seed = 0.0 if not np.isfinite(comp["seed"]) else comp["seed"]
    return seed / seeds + comp["item"] / items + comp["residual"] / (seeds * items)


def design(
    components: list[dict],
    effect: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    max_seeds: int = 30,
    items: list[int] | None = None,
    minutes_per_seed: float = 0.0,
    minutes_per_item_and_seed: float = 0.0,
) -> list[dict]:
    """How many seeds and items detect a difference of `effect` at `power` (two-sided `alpha`, normal
    approximation). `components`: the variance components of each trained arm of the comparison (one for
    "recipe vs Base": the components of the per-seed differences from Base; two for "recipe vs recipe").
    For each item count, the fewest seeds per arm that reach the power, and the minutes that design costs
    (`minutes_per_seed` of training and `minutes_per_item_and_seed` of evaluation, per arm)."""
    from scipy import stats as st

    z = st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)
    items = items or [components[0]["items"]]
    out = []
    for n in items:
        need = None
        for k in range(1, max_seeds + 1):
            var = sum(variance_of_mean(c, k, n) for c in components)
            if var > 0 and abs(effect) / np.sqrt(var) >= z or var == 0:
                need = k
                break
        row = {"effect": effect, "items": n, "seeds_per_arm": need}
        if need is not None:
            arms = len(components)
            row["minutes"] = round(arms * need * (minutes_per_seed + n * minutes_per_item_and_seed), 1)
        out.append(row)
    return out


def detectable_effect(se: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference a comparison with standard error `se` detects with probability `power`."""
    from scipy import stats as st

    return float((st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)) * se)
