"""The Multi-Bootstrap and the design helper on simulated data with known seed and item effects.

Per-item values of seed s on item j: mu + a_s + b_j + e_sj, a_s ~ N(0, sa²) the training seed's effect,
b_j ~ N(0, sb²) the item's, e_sj ~ N(0, se²) their interaction. A recipe's value is mu."""

from __future__ import annotations

import numpy as np
import pytest

from hetfb_utils.common import multiboot as M


def _arm(rng, k, b, sa, se, mu=1.0, seeds=None):
    n = len(b)
    return M.Arm(
        mu + rng.normal(0, sa, (k, 1)) + b[None, :] + rng.normal(0, se, (k, n)),
        seeds=seeds if seeds is not None else list(range(k)),
    )


def _trials(k, trials=200, n=200, sa=0.05, sb=0.3, se=0.2, method="t", delta=0.0, k_b=None):
    """(share of two-arm comparisons called different, share of one-arm intervals covering mu)."""
    rng = np.random.default_rng(11)
    called, covered = 0, 0
    for t in range(trials):
        b = rng.normal(0, sb, n)
        a = _arm(rng, k, b, sa, se, 1.0 + delta)
        c = _arm(rng, k_b or k, b, sa, se, seeds=[100 + i for i in range(k_b or k)])
        called += M.contrast([a, c], [1, -1], n_boot=600, seed=t, method=method)["real"]
        one = M.contrast([a], [1], n_boot=600, seed=t, method=method)
        covered += one["lo"] <= 1.0 + delta <= one["hi"]
    return called / trials, covered / trials


def test_coverage_is_about_95_percent_and_an_aa_design_alarms_about_5_percent():
    """Five seeds per arm, 200 items: the recipe interval covers the recipe's value in 95 % of simulated
    studies (tolerance 0.90-0.99: 200 trials), and two arms of the same recipe are called different in about
    5 % (tolerance 0.01-0.10)."""
    false_alarm, coverage = _trials(k=5)
    assert 0.90 <= coverage <= 0.99, coverage
    assert 0.01 <= false_alarm <= 0.10, false_alarm


def test_few_seeds_need_the_small_sample_correction():
    """With three seeds per arm the percentile reading of the joint bootstrap (MultiBERTs' own, meant for 25
    seeds) under-covers and cries wolf; the t reading with the seed correction stays near 5 %."""
    t_alarm, t_cov = _trials(k=3, sa=0.1, trials=150)
    p_alarm, p_cov = _trials(k=3, sa=0.1, trials=150, method="percentile")
    assert t_alarm <= 0.10 and t_cov >= 0.90, (t_alarm, t_cov)
    assert p_alarm > t_alarm and p_cov < t_cov, (p_alarm, p_cov, t_alarm, t_cov)


def test_a_planted_recipe_effect_is_detected():
    called, coverage = _trials(k=5, delta=0.15, trials=60)
    assert called >= 0.9 and coverage >= 0.85, (called, coverage)


def test_items_are_shared_by_the_arms_and_paired_seeds_stay_paired():
    """An -R model built on each seed's -S model: most of the seed effect is shared, so the seeds drawn for
    one arm are the seeds drawn for the other and the difference's interval is narrow; the same arms with
    unrelated seed labels (unpaired) give a much wider one."""
    rng = np.random.default_rng(3)
    b = rng.normal(0, 0.3, 150)
    s = _arm(rng, 5, b, 0.3, 0.05)
    r = M.Arm(s.values + 0.05 + rng.normal(0, 0.01, s.values.shape), seeds=s.seeds)
    paired = M.contrast([r, s], [1, -1])
    unpaired = M.contrast([r, M.Arm(s.values, seeds=[f"x{i}" for i in range(5)])], [1, -1])
    assert paired["real"] and paired["lo"] > 0.03 and paired["hi"] < 0.07
    assert (unpaired["hi"] - unpaired["lo"]) > 5 * (paired["hi"] - paired["lo"])
    with pytest.raises(ValueError, match="same items"):
        M.replicates([s, M.Arm(s.values[:, :10])])


def test_base_has_no_seed_variance_and_float_noise_is_never_real():
    rng = np.random.default_rng(4)
    base = M.Arm(rng.normal(0.5, 0.2, (1, 100)), fixed=True)
    again = M.Arm(base.values + rng.normal(0, 1e-7, base.values.shape), fixed=True)  # another batch layout
    r = M.contrast([again, base], [1, -1])
    assert r["seeds"] == [0, 0] and not r["real"] and abs(r["estimate"]) < 1e-5
    one = M.contrast([base], [1])
    assert one["seed_share"] == 0 and one["df"] == pytest.approx(99)


def test_variance_components_recover_the_planted_variances():
    rng = np.random.default_rng(5)
    sa, sb, se = 0.1, 0.3, 0.2
    x = 1 + rng.normal(0, sa, (30, 1)) + rng.normal(0, sb, (1, 600)) + rng.normal(0, se, (30, 600))
    c = M.variance_components(x)
    assert c["seed"] == pytest.approx(sa**2, rel=0.35)
    assert c["item"] == pytest.approx(sb**2, rel=0.15)
    assert c["residual"] == pytest.approx(se**2, rel=0.05)
    assert np.isnan(M.variance_components(x[:1])["seed"])


def test_design_finds_the_fewest_seeds_that_reach_the_power():
    comp = {"seed": 0.01, "item": 0.09, "residual": 0.04, "seeds": 5, "items": 200}
    rows = M.design([comp], 0.1, items=[200, 800], minutes_per_seed=3.0, minutes_per_item_and_seed=0.01)
    from scipy.stats import norm

    z = norm.ppf(0.975) + norm.ppf(0.8)
    for r in rows:
        k = r["seeds_per_arm"]
        assert 0.1 / np.sqrt(M.variance_of_mean(comp, k, r["items"])) >= z
        if k > 1:
            assert 0.1 / np.sqrt(M.variance_of_mean(comp, k - 1, r["items"])) < z
        assert r["minutes"] == pytest.approx(k * (3.0 + r["items"] * 0.01))
    assert rows[1]["seeds_per_arm"] <= rows[0]["seeds_per_arm"]  # more items: no more seeds
    tiny_effect = M.design([comp], 1e-4, items=[200], max_seeds=5)[0]
    assert tiny_effect["seeds_per_arm"] is None  # out of reach within 5 seeds
    assert M.detectable_effect(0.01) == pytest.approx(z * 0.01)
