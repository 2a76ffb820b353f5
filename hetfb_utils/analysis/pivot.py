"""The generalized pivot of a recipe-level comparison, read without a coin flip (`multiboot.contrast` uses it).

The truth of a comparison is estimate - Z sqrt(V), where V is the comparison's variance with each of its mean squares
redrawn from its chi-square distribution (`variance_draws`). Drawing Z as well (what the kit did before) made every
p-value and bound move with the draw seed (a p near 0.05 by +-0.02) and floored p at 1/draws. Here Z is integrated out:
the pivot's distribution function at x is the mean over the variance draws of Phi((x - estimate) / sqrt(V)), the bounds
are its roots, and the variance draws sit at scrambled Sobol points (`scipy.stats.qmc`), so a reading moves by ~1e-5
between scrambles (`Pivot.cdf` returns its Monte Carlo standard error).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

N_DRAWS = 8192  # variance draws per generalized pivotal interval (Sobol points: a power of 2)


@functools.lru_cache(maxsize=256)
def _chi_scales(df: tuple, m: int, seed: int) -> np.ndarray:
    """df / chi2(df) at m scrambled Sobol points, one row per term: [terms, m] (cached: a compare run asks for the
    same degrees of freedom hundreds of times, and the chi-square quantile function is the slow part)."""
    from scipy import stats as st
    from scipy.stats import qmc

    d = np.asarray(df, dtype=np.float64)
    u = qmc.Sobol(d=len(d), scramble=True, seed=seed).random(m)
    scale = d[:, None] / st.chi2.ppf(np.clip(u, 1e-12, 1 - 1e-12), d[None, :]).T
    scale.setflags(write=False)
    return scale


def variance_draws(t, n_draws: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    """Draws of the comparison's variance under the generalized pivot: each mean square redrawn as ms * df / chi2(df),
    the chi-square quantiles taken at scrambled Sobol points (`scipy.stats.qmc`: low-discrepancy; `seed` picks the
    scramble, and the readings move by ~1e-5 between scrambles, `Pivot.cdf`'s error)."""
    if not len(t.ms):
        return np.zeros(1)
    m = int(2 ** np.ceil(np.log2(max(n_draws, 2))))
    return np.asarray(t.variance(t.ms[:, None] * _chi_scales(tuple(t.df.tolist()), m, seed)), dtype=np.float64)


@dataclass
class Pivot:
    """The generalized pivot of the truth, T = estimate - Z sqrt(V) (or on the log scale), read without drawing Z: its
    distribution function is the mean over the variance draws of Phi((x - estimate) / sqrt(V)) (the normal draw
    replaced by its expectation), so p-values have no 1/draws floor and bounds are roots of a smooth function."""

    center: float
    sd: np.ndarray  # sqrt of each variance draw, on the scale the pivot lives on
    log: bool = False

    def _z(self, x: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - self.center) / self.sd
        return np.where(self.sd > 0, z, np.where(x >= self.center, np.inf, -np.inf))

    def cdf(self, x: float) -> tuple[float, float]:
        """(P(T <= x), its Monte Carlo standard error)."""
        from scipy.special import ndtr

        phi = ndtr(self._z(x))
        return float(phi.mean()), float(phi.std() / np.sqrt(len(phi)))

    def quantile(self, q: float) -> float:
        """The x where P(T <= x) = q (root-finding on the smooth distribution function)."""
        from scipy.optimize import brentq

        if not np.any(self.sd > 0):
            return self.center
        span = 10.0 * float(np.max(self.sd)) + 1e-12
        lo, hi = self.center - span, self.center + span
        while self.cdf(lo)[0] > q:
            lo -= span
        while self.cdf(hi)[0] < q:
            hi += span
        return float(brentq(lambda x: self.cdf(x)[0] - q, lo, hi, xtol=1e-12 * max(1.0, abs(self.center))))

    def interval(self, confidence: float) -> tuple[float, float]:
        a = (1 - confidence) / 2
        lo, hi = self.quantile(a), self.quantile(1 - a)
        return (float(np.exp(lo)), float(np.exp(hi))) if self.log else (lo, hi)

    def at(self, null: float) -> float:
        """The null on the pivot's scale."""
        if not self.log:
            return null
        return float(np.log(null)) if null > 0 else -np.inf


def pivot(t, log: bool = False, n_draws: int = N_DRAWS, seed: int = 0) -> Pivot:
    """The generalized pivot of a comparison's terms (`log`: of log(estimate), by the delta method's scale)."""
    sd = np.sqrt(np.maximum(variance_draws(t, n_draws, seed), 0.0))
    return Pivot(float(np.log(t.estimate)), sd / t.estimate, True) if log else Pivot(t.estimate, sd)
