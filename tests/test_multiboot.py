"""The recipe-level intervals and the design helper on simulated data with a known truth, in every setting the
kit reports them in (one arm, vs Base, paired, unpaired, across groups), at 2, 3 and 5 training seeds, with the
seed variance dominant or negligible (`analysis.calibration`). Seeds and trials are fixed: deterministic.

Per-item values of seed s on item j: mu + a_s + b_j + e_sj (seed, item, interaction)."""

from __future__ import annotations

import numpy as np
import pytest

from hetfb_utils.analysis import calibration as C
from hetfb_utils.analysis import design as DZ
from hetfb_utils.analysis import multiboot as M

TRIALS = 160  # per cell: a coverage of 0.95 has a Monte Carlo sd of 0.017; the bar is 0.925 - 0.03
BAR = 0.895


@pytest.mark.parametrize("setting", C.SETTINGS)
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("regime", ["seeds dominate", "negligible"])
def test_recipe_interval_covers_in_every_setting(setting, k, regime):
    """The kit's interval (generalized pivot) covers the truth in at least ~92.5 % of simulated studies (within
    Monte Carlo error of 160 trials) in every setting, at 2, 3 and 5 seeds."""
    r = C.coverage(setting, k, C.SEED_SD[regime], trials=TRIALS, n=100, seed=k, n_draws=2000)
    assert r["coverage"] >= BAR, r


@pytest.mark.parametrize("setting", ["one arm", "vs Base"])
def test_the_satterthwaite_t_interval_undercovers_at_two_seeds(setting):
    """The kit's earlier reading (Student's t at the Satterthwaite df) misses the truth too often with two seeds
    when the seeds dominate: the reason the default changed. The generalized pivot, same studies, does not."""
    sat = C.coverage(setting, 2, 0.1, trials=300, n=100, seed=7, method="satterthwaite")
    gpq = C.coverage(setting, 2, 0.1, trials=300, n=100, seed=7, n_draws=2000)
    assert sat["coverage"] < 0.92 < gpq["coverage"], (sat, gpq)


def test_a_planted_recipe_effect_is_detected():
    rng = np.random.default_rng(1)
    hits = 0
    for t in range(40):
        arms, w, _ = C.study(rng, "unpaired", 5, 0.02)
        arms[0].values += 0.15
        hits += M.contrast(arms, w, seed=t, n_draws=2000)["real"]
    assert hits >= 36


def test_paired_seeds_stay_paired_and_items_are_shared():
    """An -R model built on each seed's -S model: most of the seed effect is shared, so the difference's interval
    is narrow; the same arms with unrelated seed labels (unpaired) give a much wider one."""
    rng = np.random.default_rng(3)
    b = rng.normal(0, 0.3, 150)
    s = M.Arm(1 + rng.normal(0, 0.3, (5, 1)) + b + rng.normal(0, 0.05, (5, 150)), seeds=list(range(5)))
    r = M.Arm(s.values + 0.05 + rng.normal(0, 0.01, s.values.shape), seeds=s.seeds)
    paired = M.contrast([r, s], [1, -1])
    unpaired = M.contrast([r, M.Arm(s.values, seeds=[f"x{i}" for i in range(5)])], [1, -1])
    assert paired["real"] and paired["lo"] > 0.03 and paired["hi"] < 0.07
    assert (unpaired["hi"] - unpaired["lo"]) > 5 * (paired["hi"] - paired["lo"])
    with pytest.raises(ValueError, match="same items"):
        M.contrast([s, M.Arm(s.values[:, :10])], [1, -1])


def test_base_has_no_seed_variance_and_float_noise_is_never_real():
    rng = np.random.default_rng(4)
    base = M.Arm(rng.normal(0.5, 0.2, (1, 100)), fixed=True)
    again = M.Arm(base.values + rng.normal(0, 1e-7, base.values.shape), fixed=True)  # another batch layout
    r = M.contrast([again, base], [1, -1])
    assert r["seeds"] == [0, 0] and not r["real"] and abs(r["estimate"]) < 1e-5
    one = M.contrast([base], [1])
    assert one["seed_share"] == 0 and one["df"] == pytest.approx(99)


def test_a_one_seed_arm_carries_no_seed_variance_and_is_labelled_by_it():
    """5 seeds against 1: the one-seed arm's seed effect is unknown, so the comparison is about that one model;
    the label says so (never "recipe")."""
    from hetfb_utils.analysis.recipes import conclusion_kind

    assert conclusion_kind([5, 1], 400).startswith("model (5 vs 1 seeds")
    assert conclusion_kind([1], 400).startswith("model (one training seed")
    assert conclusion_kind([3, 0], 400).startswith("recipe, exploratory (3 vs 0")
    assert conclusion_kind([5, 5], 400) == "recipe (5 vs 5 seeds x 400 items)"
    assert conclusion_kind([0], 400).startswith("Base")


def test_variance_components_recover_the_planted_variances_and_bound_the_seed_variance():
    rng = np.random.default_rng(5)
    sa, sb, se = 0.1, 0.3, 0.2
    x = 1 + rng.normal(0, sa, (30, 1)) + rng.normal(0, sb, (1, 600)) + rng.normal(0, se, (30, 600))
    c = DZ.variance_components(x)
    assert c["seed"] == pytest.approx(sa**2, rel=0.35)
    assert c["item"] == pytest.approx(sb**2, rel=0.15)
    assert c["residual"] == pytest.approx(se**2, rel=0.05)
    assert np.isnan(DZ.variance_components(x[:1])["seed"])
    # the 80 % upper bound sits above the truth in about 80 % of 5-seed studies
    above = [
        DZ.variance_components(1 + rng.normal(0, sa, (5, 1)) + rng.normal(0, se, (5, 200)))["seed_upper"] > sa**2
        for _ in range(400)
    ]
    assert 0.74 <= np.mean(above) <= 0.86


def test_contrast_shares_agree_with_the_variance_split():
    """One definition of the seeds' share: `contrast` and `Terms.parts` give the same."""
    rng = np.random.default_rng(6)
    x = 1 + rng.normal(0, 0.1, (4, 1)) + rng.normal(0, 0.3, (1, 200)) + rng.normal(0, 0.2, (4, 200))
    r = M.contrast([M.Arm(x)], [1.0])
    parts = M.terms([M.Arm(x)], [1.0]).parts()
    assert r["seed_share"] == pytest.approx(parts["seeds"] / sum(parts.values()))


def test_design_never_asks_for_fewer_than_two_seeds_and_plans_with_the_upper_bound():
    comp = {"seed": 0.0, "seed_upper": 0.004, "item": 0.09, "residual": 0.04, "seeds": 5, "items": 200}
    rows = DZ.design([comp], 0.1, items=[200, 800], minutes_per_seed=3.0, minutes_per_item_and_seed=0.01)
    assert all(r["seeds_per_arm"] >= 2 for r in rows)
    for r in rows:
        k = r["seeds_per_arm"]
        assert DZ.power(0.1, DZ.expected_terms(comp, k, r["items"])) >= 0.8 <= r["power"]
        assert DZ.power(0.1, DZ.expected_terms(comp, k - 1, r["items"])) < 0.8 or k == 2
        assert r["minutes"] == pytest.approx(k * (3.0 + r["items"] * 0.01))
    upper = DZ.design([comp], 0.1, items=[200], seed_key="seed_upper")[0]
    assert upper["seeds_per_arm"] > rows[0]["seeds_per_arm"]
    assert DZ.design([comp], 1e-4, items=[200], max_seeds=5)[0]["seeds_per_arm"] is None  # out of reach


def test_log_scale_interval_for_a_skewed_positive_metric():
    """A single arm of a non-negative, right-skewed metric: the log-scale interval is asymmetric (longer on the
    high side) and never reaches below 0."""
    rng = np.random.default_rng(9)
    x = np.exp(rng.normal(0, 1.0, (5, 1)) * 0.1 + rng.normal(0, 1.0, (1, 100)) + rng.normal(0, 0.3, (5, 100)))
    r = M.contrast([M.Arm(x)], [1.0], transform="log")
    assert r["method"] == "gpq+log" and r["lo"] > 0 and (r["hi"] - r["estimate"]) > (r["estimate"] - r["lo"])


def test_variance_parts_known_answer_and_clipping():
    """Seed part = seed terms - residual, item part = item term - residual (each clipped at 0), residual as is."""
    kind = ["seed", "residual", "item"]
    t = M.Terms(0.0, np.array([4.0, 1.0, 9.0]), np.array([2.0, 10.0, 4.0]), np.array([0.5, 0.5, 0.25]), kind, 4)
    assert t.parts() == {"seeds": 1.5, "items": 1.75, "residual": 0.5}
    low = M.Terms(0.0, np.array([0.5, 1.0, 1.0]), np.array([2.0, 10.0, 4.0]), np.array([0.5, 0.5, 0.25]), kind, 4)
    assert low.parts() == {"seeds": 0.0, "items": 0.0, "residual": 0.5}


def _planted(rng, k=3, n=120):
    return 0.5 + rng.normal(0, 0.1, (k, 1)) + rng.normal(0, 0.3, (1, n)) + rng.normal(0, 0.2, (k, n))


def test_satterthwaite_and_percentile_readings_known_answers():
    """The two readings kept for comparison: Student's t at the Welch-Satterthwaite df around the estimate (two-sided
    p from the same t), and the quantiles of the joint bootstrap replicates as they are (MultiBERTs), with one-sided
    p-values the shares of replicates on either side of the null."""
    from scipy import stats as st

    rng = np.random.default_rng(21)
    arms, w = [M.Arm(_planted(rng)), M.Arm(_planted(rng) + 0.05)], [1.0, -1.0]
    r = M.contrast(arms, w, method="satterthwaite")
    q = st.t(r["df"]).ppf(0.975)
    assert np.isfinite(r["df"]) and r["df"] < 50  # a t, not the normal: few seeds
    assert (r["lo"], r["hi"]) == pytest.approx((r["estimate"] - q * r["se"], r["estimate"] + q * r["se"]), rel=1e-9)
    assert r["p"] == pytest.approx(2 * st.t(r["df"]).sf(abs(r["estimate"]) / r["se"]), rel=1e-9)
    for null in (0.0, 0.1, -0.1):  # one-sided p-values on both sides, against a null other than 0 too
        n = M.contrast(arms, w, method="satterthwaite", null=null)
        z = (n["estimate"] - null) / n["se"]
        assert (n["p_greater"], n["p_less"]) == pytest.approx((st.t(n["df"]).sf(z), st.t(n["df"]).cdf(z)), rel=1e-9)
    b = M.contrast(arms, w, method="percentile", n_boot=4000, seed=3)
    draws = M.replicates(arms, 4000, 3, rescale=False) @ np.array(w)
    assert (b["lo"], b["hi"]) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), rel=1e-12)
    assert b["p_greater"] == pytest.approx(np.mean(draws <= 0)) and b["p_less"] == pytest.approx(np.mean(draws >= 0))


def test_a_comparison_without_variance_is_its_estimate():
    """Zero variance: the interval is the point, and two identical arms differ by nothing (p = 1)."""
    flat = M.Arm(np.ones((2, 5)))
    one = M.contrast([flat], [1.0])
    assert (one["lo"], one["hi"], one["p_greater"], one["p_less"]) == (1.0, 1.0, 0.0, 1.0)
    same = M.contrast([flat, M.Arm(np.ones((2, 5)))], [1.0, -1.0])
    assert same["estimate"] == 0.0 and same["p"] == 1.0 and not same["real"]


def test_joint_bootstrap_replicates_known_answers():
    """Nothing resampled: every replicate is the estimate. Items only: the replicates' sd is the items' standard
    error. Seeds only, rescaled: their variance is the unbiased seed variance of the mean (s^2 / k), where the raw
    seeds give (k - 1) / k of it. Arms with the same seed labels share their seed draws; other labels do not. The
    same call gives the same replicates."""
    rng = np.random.default_rng(8)
    k, n = 3, 400
    x = 0.5 + rng.normal(0, 0.2, (k, 1)) + rng.normal(0, 0.3, (k, n))
    arm = M.Arm(x)
    fixed = M.replicates([arm], 50, resample_seeds=False, resample_items=False)
    assert fixed.shape == (50, 1) and np.allclose(fixed, arm.estimate())
    items = M.replicates([M.Arm(x[:1])], 8000, seed=1)
    assert items[:, 0].std() == pytest.approx(x[0].std() / np.sqrt(n), rel=0.05)
    assert items.mean() == pytest.approx(x[0].mean(), abs=3 * x[0].std() / np.sqrt(n) / np.sqrt(8000) + 1e-3)
    means = x.mean(1)
    seeds = M.replicates([arm], 20000, seed=2, resample_items=False)
    raw = M.replicates([arm], 20000, seed=2, resample_items=False, rescale=False)
    assert seeds.var() == pytest.approx(means.var(ddof=1) / k, rel=0.05)
    assert raw.var() == pytest.approx(means.var(ddof=0) / k, rel=0.05)
    twin = M.Arm(x.copy(), [0, 1, 2])
    shared = M.replicates([M.Arm(x, [0, 1, 2]), twin], 200, seed=4, resample_items=False)
    apart = M.replicates([M.Arm(x, [0, 1, 2]), M.Arm(x.copy(), [7, 8, 9])], 200, seed=4, resample_items=False)
    assert np.array_equal(shared[:, 0], shared[:, 1]) and not np.array_equal(apart[:, 0], apart[:, 1])
    assert np.array_equal(M.replicates([arm], 30), M.replicates([arm], 30))
    w = np.ones((4, n))
    assert arm.per_seed(w).shape == (4, k) and np.allclose(arm.per_seed(w), np.tile(arm.per_seed(), (4, 1)))
