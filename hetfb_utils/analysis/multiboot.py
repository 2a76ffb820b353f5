"""Statements about a training *recipe*, not one trained model: seeds and items, both random.

The model is the Multi-Bootstrap's (Sellam et al., "The MultiBERTs", ICLR 2022, §3): a recipe (data mix,
selection, algorithm) evaluated with k training seeds on n evaluation items has two sources of randomness,
which models training happened to produce (seeds) and which items the evaluation happened to use; the items
are shared by every arm of a comparison (paired items), and arms trained on the same seeds are compared seed
by seed (MultiBERTs' paired seeds). Per-item values of seed s on item j follow

    y_sj = mu + a_s + b_j + e_sj        (seed effect a, item effect b, their interaction e)

and a comparison (a weighted sum of arms: one arm with weight 1, "A - B" with 1 and -1) has variance
sum over seed groups (var_a / k + var_e / (k n)) + var_b / n.

**What is ours, and why (measured by simulation; the table is below).** MultiBERTs had 25 seeds; a kit run has
2-5. With so few, every reading of the joint bootstrap is too narrow: its percentile interval ignores how few
seeds estimate the seed variance, and a t interval with Satterthwaite degrees of freedom is too narrow exactly
when the seed variance was estimated low by chance (it then trusts the items' n - 1 degrees of freedom). So the
kit's default interval (`method="gpq"`) is a **generalized pivotal interval** (Weerahandi 1993; the standard
small-sample interval for the mean of a random-effects model): the variance of the comparison is written in the
ANOVA mean squares of the seeds x items tables (one seed term and one residual term per seed group, one item
term), each mean square is redrawn from its own chi-square distribution (k - 1 degrees of freedom for a seed
term), and the interval is the 2.5 and 97.5 % points of estimate - Z sqrt(variance drawn). The normal Z is not drawn:
the pivot's distribution function is the mean, over the variance draws, of Phi((x - estimate) / sqrt(variance)), the
bounds are its roots (`Pivot`), and the variance draws sit at scrambled Sobol points, so a p-value carries a Monte Carlo
error of ~1e-4 (reported as `p_mc_se`) and no 1/draws floor; with plain draws of both, a p near 0.05 moved by +-0.02
with the draw seed (measured in docs/measurements.md). With two seeds and the
seeds dominant it is as wide as Student's t with one degree of freedom (it must be: nothing else covers); with
the items dominant it is the items' t interval. A ratio statistic (sum over sum) is linearised per item first.
Non-negative, skewed metrics (Bias (Cluster), Bias (Entropy): `LOG_METRICS`) get the same interval on the log
scale for a single arm's value (`transform="log"`), where the symmetric one missed low.

Other readings kept for comparison: `method="satterthwaite"` (the same variance, Student's t at the Welch-
Satterthwaite df: the kit's earlier default) and `method="percentile"` (MultiBERTs' own: quantiles of the joint
seeds x items bootstrap, `replicates`).

**Coverage** of the 95 % interval (share of simulated studies whose interval covers the truth; 1000 studies per
cell for GPQ and t, 300 for the percentile reading; n = 200 items, item sd 0.3, residual sd 0.2; "seeds dominate" =
seed sd 0.1, "balanced" 0.03, "negligible" 0.005; paired arms' seed effects correlate 0.5; "across groups" is k seeds
against 5; `tools/coverage.py` regenerates it, `tests/test_multiboot.py` checks cells of it). The GPQ interval is
2-3x the t interval's width at 2 seeds (what coverage costs there) and 0-17 % wider at 5 ("t": the Satterthwaite
reading; "pct": MultiBERTs' percentile reading; "bal.": balanced):

| setting | seeds | GPQ dominant | GPQ balanced | GPQ negligible | t dominant | t balanced | pct dominant | pct bal. |
|---|---|---|---|---|---|---|---|---|
| one arm | 2 | 0.961 | 0.985 | 0.986 | 0.866 | 0.922 | 0.723 | 0.887 |
| one arm | 3 | 0.965 | 0.982 | 0.967 | 0.928 | 0.951 | 0.817 | 0.923 |
| one arm | 5 | 0.956 | 0.969 | 0.962 | 0.947 | 0.961 | 0.893 | 0.940 |
| vs Base | 2 | 0.955 | 0.975 | 0.982 | 0.874 | 0.908 | 0.667 | 0.890 |
| vs Base | 3 | 0.951 | 0.968 | 0.978 | 0.922 | 0.930 | 0.800 | 0.930 |
| vs Base | 5 | 0.952 | 0.970 | 0.965 | 0.937 | 0.963 | 0.860 | 0.947 |
| paired | 2 | 0.947 | 0.960 | 0.963 | 0.949 | 0.957 | 0.687 | 0.907 |
| paired | 3 | 0.943 | 0.949 | 0.961 | 0.944 | 0.952 | 0.800 | 0.940 |
| paired | 5 | 0.946 | 0.951 | 0.946 | 0.950 | 0.946 | 0.873 | 0.943 |
| unpaired | 2 | 0.994 | 0.999 | 0.998 | 0.975 | 0.983 | 0.710 | 0.870 |
| unpaired | 3 | 0.991 | 0.990 | 0.988 | 0.973 | 0.965 | 0.783 | 0.890 |
| unpaired | 5 | 0.978 | 0.976 | 0.978 | 0.959 | 0.958 | 0.880 | 0.940 |
| across groups | 2 | 0.983 | 0.985 | 0.987 | 0.928 | 0.933 | 0.777 | 0.887 |
| across groups | 3 | 0.982 | 0.981 | 0.982 | 0.948 | 0.954 | 0.870 | 0.940 |
| across groups | 5 | 0.978 | 0.976 | 0.978 | 0.959 | 0.958 | 0.880 | 0.940 |

With a seed that does not behave (each seed of the arm shifted by 0.3 with probability 0.1; the truth is the
well-behaved recipe's; GPQ, 1000 studies per cell, `tools/coverage.py`): vs Base 0.966 / 0.983 / 0.984 at 3 seeds
and 0.955 / 0.982 / 0.975 at 6 (seeds dominate / balanced / negligible), paired 0.957 / 0.953 / 0.956 and
0.946 / 0.950 / 0.955. Such a seed inflates the seed mean square and so widens the interval rather than moving it
past the truth; the claims' leave-one-seed-out column names a seed whose removal changes a verdict.

A seed group of k seeds is "recipe" evidence only with k >= 2 in every trained arm, and exploratory below 4
(`conclusion_kind`).

Where the variance comes from and what a study needs (variance components, power, design) is in `analysis.design`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..common.stats import TOLERANCE, real_difference
from .pivot import N_DRAWS as PIVOT_DRAWS
from .pivot import Pivot, pivot, variance_draws

N_BOOT = 2000  # joint bootstrap replicates (the percentile reading; the worked example of notebook 06)
N_DRAWS = PIVOT_DRAWS  # variance draws per generalized pivotal interval (`pivot`)
CONFIDENCE = 0.95
EXPLORATORY_BELOW = 4  # seeds per trained arm under which a recipe-level conclusion is exploratory
LOG_METRICS = ("Bias (Cluster)", "Bias (Entropy)")
METHODS = ("gpq", "satterthwaite", "percentile")

__all__ = [
    "CONFIDENCE",
    "EXPLORATORY_BELOW",
    "LOG_METRICS",
    "METHODS",
    "N_BOOT",
    "TOLERANCE",
    "Arm",
    "Pivot",
    "Terms",
    "contrast",
    "pivot",
    "real_difference",
    "replicates",
    "terms",
    "variance_draws",
]


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
        """Seeds (rows of `values`)."""
        return self.values.shape[0]

    @property
    def n(self) -> int:
        """Items (columns of `values`)."""
        return self.values.shape[1]

    @property
    def seed_resampled(self) -> bool:
        """Does the arm carry seed variance (trained, at least two seeds)?"""
        return not self.fixed and self.k > 1

    def per_seed(self, item_w: np.ndarray | None = None) -> np.ndarray:
        """The statistic of each seed over the items (weighted by counts `item_w` [B, n]): [B, k] or [k]."""
        if item_w is None:
            return self.values.mean(1) if self.den is None else self.values.sum(1) / self.den.sum(1)
        if self.den is None:
            return item_w @ self.values.T / item_w.sum(1, keepdims=True)
        return (item_w @ self.values.T) / (item_w @ self.den.T)

    def estimate(self) -> float:
        """The arm's statistic: the mean over its seeds of the statistic over the items."""
        return float(np.mean(self.per_seed()))

    def linear(self) -> np.ndarray:
        """Per-item values whose mean over items is each seed's statistic: the values themselves, or for a
        ratio of sums its linearisation R_s + (v_sj - R_s d_sj) / mean_j(d_sj)."""
        if self.den is None:
            return self.values
        r = self.per_seed()[:, None]
        return r + (self.values - r * self.den) / self.den.mean(1, keepdims=True)

    def rescaled(self) -> Arm:
        """Seed deviations (per item, from the mean over seeds) scaled by sqrt(k/(k-1)): the same estimate, and
        a bootstrap over its k seeds whose variance is unbiased for the seed variance of the mean."""
        if not self.seed_resampled:
            return self
        mean = self.values.mean(0, keepdims=True)
        return Arm(mean + np.sqrt(self.k / (self.k - 1)) * (self.values - mean), list(self.seeds), self.den, self.fixed)


# --------------------------------------------------------------------------- the variance, in mean squares
@dataclass
class Terms:
    """The comparison's variance in mean squares, each with its degrees of freedom: seed terms (one per seed
    group, coefficient 1/(k n)), the item term (coefficient 1/n) and the residual terms that the item term counts
    again (coefficient 1/(k n), subtracted). variance = sum(seed terms) + max(item - residuals, 0): the item part
    estimates var_b / n >= 0 and is clipped at 0 on its own, so noise in it never eats the seed part."""

    estimate: float
    ms: np.ndarray
    df: np.ndarray
    coef: np.ndarray  # all >= 0
    kind: list  # "seed" / "residual" / "item" per term
    items: int

    def _sum(self, kind: str, ms: np.ndarray | None = None) -> np.ndarray | float:
        ms = self.ms if ms is None else ms
        mask = np.array([k == kind for k in self.kind])
        if not mask.any():
            return 0.0 if ms.ndim == 1 else np.zeros(ms.shape[1])
        return (self.coef[mask, None] * ms[mask].reshape(mask.sum(), -1)).sum(0).squeeze()

    def variance(self, ms: np.ndarray | None = None) -> np.ndarray | float:
        """sum(seed terms) + max(item - residual terms, 0); `ms` [terms, draws] for redrawn mean squares."""
        item = np.maximum(self._sum("item", ms) - self._sum("residual", ms), 0.0)
        return self._sum("seed", ms) + item

    def parts(self) -> dict:
        """Seed, item and residual parts of the variance (each >= 0; one definition shared by `contrast` and
        `variance_split`)."""
        seed, resid, item = (float(self._sum(k)) for k in ("seed", "residual", "item"))
        return {"seeds": max(seed - resid, 0.0), "items": max(item - resid, 0.0), "residual": resid}

    def satterthwaite_df(self) -> float:
        """Welch-Satterthwaite degrees of freedom of the variance (inf when it is 0); the item and residual
        terms count only when the item part is positive."""
        use = [k == "seed" or float(self._sum("item")) > float(self._sum("residual")) for k in self.kind]
        sign = np.where(np.array(self.kind) == "residual", -1.0, 1.0)
        parts = (sign * self.coef * self.ms)[use]
        num = float(np.sum(parts)) ** 2
        den = float(np.sum(parts**2 / self.df[use]))
        return float(num / den) if den > 0 else float("inf")


def _seed_tables(arms: list[Arm], weights) -> tuple[list[np.ndarray], np.ndarray]:
    """The weighted sum of arms split into tables with seed variance (one k x n table per set of seed labels:
    arms on the same seeds are combined seed by seed) and one fixed per-item row (Base, single-seed arms)."""
    n = {a.n for a in arms}
    if len(n) != 1:
        raise ValueError(f"arms must be scored on the same items, got item counts {sorted(n)}")
    fixed = np.zeros(n.pop())
    groups: dict[tuple, np.ndarray] = {}
    for a, w in zip(arms, weights):
        x = a.linear()
        if a.seed_resampled:
            key = tuple(a.seeds)
            groups[key] = groups.get(key, 0) + w * x
        else:
            fixed = fixed + w * x.mean(0)
    return list(groups.values()), fixed


def terms(arms: list[Arm], weights) -> Terms:
    """The estimate and its variance terms: per seed group n var(seed means) (k - 1 df, coefficient 1/(k n)) and
    the residual mean square ((k - 1)(n - 1) df, coefficient 1/(k n), subtracted from the item term); one item
    term, the variance of the per-item combination over items (n - 1 df, coefficient 1/n)."""
    tables, fixed = _seed_tables(arms, list(np.asarray(weights, dtype=np.float64)))
    n = len(fixed)
    ms, df, coef, kind = [], [], [], []
    column = fixed.copy()
    for x in tables:
        k = x.shape[0]
        rows, cols, grand = x.mean(1), x.mean(0), x.mean()
        column += cols
        ms.append(n * np.var(rows, ddof=1)), df.append(k - 1), coef.append(1 / (k * n)), kind.append("seed")
        if n > 1:
            resid = x - rows[:, None] - cols[None, :] + grand
            ms.append(np.sum(resid**2) / ((k - 1) * (n - 1))), df.append((k - 1) * (n - 1))
            coef.append(1 / (k * n)), kind.append("residual")
    if n > 1:
        ms.append(np.var(column, ddof=1)), df.append(n - 1), coef.append(1 / n), kind.append("item")
    est = float(sum(x.mean() for x in tables) + fixed.mean())
    return Terms(est, np.asarray(ms, float), np.asarray(df, float), np.asarray(coef, float), kind, n)


def _t_interval(est: float, var: float, df: float, null: float, alpha: float) -> tuple[float, float, float, float]:
    """(lo, hi, p_greater, p_less) of Student's t at `df` (the normal when infinite) around `est` with `var`."""
    from scipy import stats as st

    dist = st.t(df) if np.isfinite(df) else st.norm()
    se = np.sqrt(var)
    q = dist.ppf(1 - alpha / 2)
    return est - q * se, est + q * se, float(dist.sf((est - null) / se)), float(dist.cdf((est - null) / se))


def _draws_interval(draws: np.ndarray, at: float, alpha: float) -> tuple[float, float, float, float]:
    """(lo, hi, p_greater, p_less) read off draws of the truth (the percentile reading): their quantiles, and the
    shares at or beyond `at`."""
    lo, hi = (float(x) for x in np.quantile(draws, [alpha / 2, 1 - alpha / 2]))
    return lo, hi, float(np.mean(draws <= at)), float(np.mean(draws >= at))


def _read(t: Terms, arms, weights, method: str, log: bool, null: float, confidence: float, n_boot, n_draws, seed):
    """(lo, hi, p_greater, p_less, Monte Carlo error, pivot or None) of a comparison by `method`."""
    est, var = t.estimate, float(max(t.variance(), 0.0))
    if var == 0:
        return est, est, float(est <= null), float(est >= null), 0.0, None
    if method == "satterthwaite":
        return (*_t_interval(est, var, t.satterthwaite_df(), null, 1 - confidence), 0.0, None)
    if method == "gpq":
        piv = pivot(t, log, n_draws)  # one fixed scramble: deterministic, and cached per degrees of freedom
        lo, hi = piv.interval(confidence)
        p_greater, mc = piv.cdf(piv.at(null))
        return lo, hi, p_greater, 1.0 - p_greater, mc, piv
    # percentile: MultiBERTs' reading of the joint replicates, as is (no rescaling)
    draws = replicates(arms, n_boot, seed, rescale=False) @ np.asarray(weights, dtype=np.float64)
    return (*_draws_interval(draws, null, 1 - confidence), 0.0, None)


def contrast(
    arms: list[Arm],
    weights: list[float],
    *,
    method: str = "gpq",
    transform: str | None = None,
    null: float = 0.0,
    n_boot: int = N_BOOT,
    n_draws: int = N_DRAWS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    tolerance: float = TOLERANCE,
) -> dict:
    """A linear combination of arms (one arm with weight 1: its value; two with 1, -1: their difference) at
    recipe level. Returns estimate, lo, hi; p (two-sided, against `null`), p_greater and p_less (one-sided:
    the truth above / below `null`) with `p_mc_se`, the Monte Carlo standard error of the one-sided p-values (GPQ);
    se, df (Satterthwaite), the variance shares of seeds and items, the seeds per arm (0: not trained; 1: one seed,
    no seed variance), `real` (the interval excludes 0 and |estimate| > `tolerance`) and, for GPQ, `pivot` (the
    `Pivot`, for intervals at other levels: `Pivot.interval`). `transform="log"` (one arm of a positive metric):
    the interval on the log scale, mapped back."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if transform not in (None, "log"):
        raise ValueError(f"transform must be None or 'log', got {transform!r}")
    t = terms(arms, weights)
    est, var = t.estimate, float(max(t.variance(), 0.0))
    log = transform == "log" and est > 0 and len(arms) == 1
    df = t.satterthwaite_df()
    lo, hi, p_greater, p_less, mc, piv = _read(t, arms, weights, method, log, null, confidence, n_boot, n_draws, seed)
    parts = t.parts()
    total = sum(parts.values())
    return {
        "estimate": est,
        "lo": float(lo),
        "hi": float(hi),
        "p": min(2 * min(p_greater, p_less), 1.0),
        "p_greater": min(max(p_greater, 0.0), 1.0),
        "p_less": min(max(p_less, 0.0), 1.0),
        "p_mc_se": mc,
        "se": float(np.sqrt(var)),
        "df": df,
        "seed_share": parts["seeds"] / total if total > 0 else 0.0,
        "item_share": (parts["items"] + parts["residual"]) / total if total > 0 else 0.0,
        "seeds": [a.k if not a.fixed else 0 for a in arms],
        "items": t.items,
        "method": method + ("+log" if log else ""),
        "real": real_difference(est, lo, hi, tolerance),
        "pivot": piv,
    }


# --------------------------------------------------------------------------- the joint bootstrap
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
    """[n_boot, arms] Multi-Bootstrap replicates of each arm's statistic: items drawn once per replicate for
    every arm, seeds per arm (shared between arms with the same seed labels); either factor can be held fixed."""
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
