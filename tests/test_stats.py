"""The statistics on simulated data with known answers, and the interval tables on planted models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hetfb_utils.analysis import uncertainty
from hetfb_utils.common import stats


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = [
        lo <= 1.0 <= hi for lo, hi in (stats.interval(rng.exponential(1.0, 60), seed=i)[1:] for i in range(300))
    ]  # skewed, mean 1
    assert 0.90 <= np.mean(hits) <= 0.985, np.mean(hits)


def test_interval_is_deterministic_and_narrows_with_more_items():
    rng = np.random.default_rng(1)
    x = rng.normal(0.4, 0.3, 400)
    assert stats.interval(x, seed=3) == stats.interval(x, seed=3)
    w_small = np.subtract(*stats.interval(x[:100], seed=3)[2:0:-1])
    w_all = np.subtract(*stats.interval(x, seed=3)[2:0:-1])
    assert w_all < w_small * 0.65  # 4x the items: about half the width
    assert stats.interval(np.ones(10)) == (1.0, 1.0, 1.0)


def test_planted_difference_is_detected_and_a_null_one_is_not():
    rng = np.random.default_rng(2)
    base = rng.normal(1.0, 0.5, 100)
    planted = stats.paired(base + 0.15 + rng.normal(0, 0.2, 100), base, seed=1)
    assert planted["delta_lo"] > 0 and planted["p"] < 0.01
    false_alarms = 0
    for i in range(60):  # two models equal in distribution, paired on the same items
        a = base + rng.normal(0, 0.2, 100)
        b = base + rng.normal(0, 0.2, 100)
        d = stats.paired(a, b, seed=i, n_permutations=999)
        false_alarms += stats.excludes_zero(d["delta_lo"], d["delta_hi"])
    assert false_alarms <= 8  # about 5 % of 60 expected


def test_ratio_statistics_and_paired_ratio():
    rng = np.random.default_rng(3)
    den = rng.integers(1, 4, 200).astype(float)
    num = rng.binomial(den.astype(int), 0.6).astype(float)
    v, lo, hi = stats.interval(num, den, seed=1)
    assert v == pytest.approx(num.sum() / den.sum()) and lo < 0.6 < hi
    better = np.minimum(num + rng.binomial(1, 0.5, 200), den)
    d = stats.paired(better, num, den, den, seed=1)
    assert d["delta"] > 0 and d["delta_lo"] > 0 and d["p"] < 0.01
    same = stats.paired(num, num, den, den, seed=1)
    assert same["delta"] == 0 and same["p"] == 1.0


def test_proportion_wilson_and_chance():
    half = stats.proportion(32, 64)
    assert half["at_chance"] and half["lo"] < 0.5 < half["hi"]
    good = stats.proportion(60, 64)
    assert not good["at_chance"] and good["p"] < 1e-10 and good["lo"] > 0.8
    from scipy.stats import binomtest

    assert good["lo"] == pytest.approx(binomtest(60, 64).proportion_ci(method="wilson").low)
    with pytest.raises(ValueError):
        stats.paired([1, 2], [1, 2, 3])


def test_seed_summary_and_format():
    s = stats.seed_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["sd"] == 1.0 and s["seeds"] == 3
    assert stats.fmt_ci(0.41472, 0.3801, 0.4502) == "0.415 [0.38, 0.45]"


def test_seed_summary_known_answers_drop_missing_seeds():
    """Mean, sample sd (ddof 1), range and count over the finite values; one seed has no sd; none has nothing."""
    s = stats.seed_summary([4.0, float("nan"), 1.0, 7.0])
    assert s == {"mean": 4.0, "sd": 3.0, "min": 1.0, "max": 7.0, "seeds": 3}
    assert stats.seed_summary([1.0, 3.0])["sd"] == pytest.approx(np.sqrt(2.0))
    one = stats.seed_summary([2.5])
    assert one["mean"] == one["min"] == one["max"] == 2.5 and np.isnan(one["sd"]) and one["seeds"] == 1
    none = stats.seed_summary([float("nan")])
    assert none["seeds"] == 0 and all(np.isnan(none[k]) for k in ("mean", "sd", "min", "max"))


def test_fmt_ci_digits_and_missing_parts():
    assert stats.fmt_ci(0.41472, 0.3801, 0.4502, digits=2) == "0.41 [0.4, 0.5]"
    assert stats.fmt_ci(-0.0573, -0.0872, -0.0274) == "-0.0573 [-0.087, -0.027]"
    assert stats.fmt_ci(0.41472, float("nan"), 0.45) == "0.415" and stats.fmt_ci(0.41472, None, None) == "0.415"
    assert stats.fmt_ci(float("nan"), 0.1, 0.2) == "–" and stats.fmt_ci(None, 0.1, 0.2) == "–"


def test_seed_for_is_stable_and_tells_names_apart():
    """One seed per name tuple, the same every time (a 32-bit sha1 prefix), and another for any other tuple: two
    intervals never share a bootstrap stream by accident."""
    import hashlib

    assert stats.seed_for(42, "table1", "Bias") == int(
        hashlib.sha1(repr((42, "table1", "Bias")).encode()).hexdigest()[:8], 16
    )
    seeds = {stats.seed_for(s, t, m) for s in (42, 43) for t in ("table1", "winogender") for m in ("Bias", "Accuracy")}
    assert len(seeds) == 8 and all(0 <= x < 2**32 for x in seeds)


def _exact_flip_p(a, b, da, db):
    """The two-sided sign-flip p-value of sum(a)/sum(da) - sum(b)/sum(db), by enumerating every swap of A and B."""
    import itertools

    obs = a.sum() / da.sum() - b.sum() / db.sum()
    null = []
    for flips in itertools.product((False, True), repeat=len(a)):
        f = np.array(flips)
        x, y, dx, dy = np.where(f, b, a), np.where(f, a, b), np.where(f, db, da), np.where(f, da, db)
        null.append(x.sum() / dx.sum() - y.sum() / dy.sum())
    null = np.array(null)
    tol = 1e-12 * max(1.0, abs(obs))
    return min(1.0, 2 * min(np.mean(null >= obs - tol), np.mean(null <= obs + tol)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ratio_sign_flip_p_value_is_the_exact_enumeration(seed):
    """The paired test of a ratio of sums (IFEval's instruction-level accuracy) swaps A and B in numerator and
    denominator together, item by item: with every one of the 2^n swaps enumerated it equals the brute-force
    p-value, and it differs from the mean's test (which would ignore the denominators)."""
    rng = np.random.default_rng(seed)
    da, db = rng.integers(1, 6, 9).astype(float), rng.integers(1, 6, 9).astype(float)
    a, b = rng.binomial(da.astype(int), 0.8).astype(float), rng.binomial(db.astype(int), 0.4).astype(float)
    d = stats.paired(a, b, da, db, seed=seed, n_permutations=2**9)
    assert d["delta"] == pytest.approx(a.sum() / da.sum() - b.sum() / db.sum())
    assert d["p"] == pytest.approx(_exact_flip_p(a, b, da, db), abs=1e-9)
    ones = np.ones(9)
    assert (
        abs(d["p"] - _exact_flip_p(a, b, ones, ones)) > 0.05
    )  # here the denominators matter (0.016 vs 0.70 at seed 0)


def _model(name, items, variant=None):
    cols = {c: items + k for k, c in enumerate(["Bias", "Bias (Entropy)", "Bias (Cluster)"])}
    return {
        "model": name,
        "variant": variant,
        "winobias": {
            "items": {
                "id": [f"pair{i}" for i in range(len(items))],
                **cols,
                "Accuracy": np.zeros(len(items)),
                "Similarity": np.ones(len(items)),
            }
        },
    }


def test_interval_tables_mark_a_planted_model_and_not_a_null_one(tiny):
    rng = np.random.default_rng(4)
    base = rng.normal(1.0, 0.3, 100)
    noise = rng.normal(0, 0.05, 100)
    results = [
        _model("Base", base),
        _model("HD-0.2-S", base + 0.2 + noise, "hd-0.2"),
        _model("HD-0.2-R", base + noise - noise.mean(), "hd-0.2"),
    ]  # no difference on average
    for r in results:
        r["winobias"]["items"] = {k: list(v) for k, v in r["winobias"]["items"].items()}
    ci = uncertainty.interval_tables(results, tiny)["table1_winobias"].set_index(["model", "metric"])
    assert ci.loc[("HD-0.2-S", "Bias"), "differs_from_base"]
    assert not ci.loc[("HD-0.2-R", "Bias"), "differs_from_base"]
    assert ci.loc[("Base", "Bias"), "value"] == pytest.approx(base.mean())
    md, note = uncertainty.table1_with_intervals(ci.reset_index(), results, tiny)
    assert md.set_index("model").loc["HD-0.2-S", "Bias"].endswith(uncertainty.DIFF_MARK)
    assert "[" in md.set_index("model").loc["HD-0.2-R", "Bias"] and not md.set_index("model").loc[
        "HD-0.2-R", "Bias"
    ].endswith(uncertainty.DIFF_MARK)
    d = uncertainty.differences(results, tiny)
    r_vs_s = d[(d.model == "HD-0.2-R") & (d.reference == "HD-0.2-S") & (d.metric == "Bias")].iloc[0]
    assert r_vs_s["delta"] < 0 and r_vs_s["real"] and r_vs_s["conclusion"] == uncertainty.MODEL_LEVEL
    assert set(pd.unique(d["reference"])) == {"Base", "HD-0.2-S"}


def _seed_runs(tiny, shifts: dict, n: int = 80, seeds=(1, 2, 3)):
    """Runs of one recipe that differ only in training.seed, on the same items: Base fixed; each model
    `name: (mean shift, shift in seed index 0 only)` plus small item noise."""
    from hetfb_utils.analysis.runs import Run

    rng = np.random.default_rng(5)
    base = rng.normal(1.0, 0.3, n)
    runs = []
    for k, seed in enumerate(seeds):
        res = [_model("Base", base)]
        for name, (shift, first_only) in shifts.items():
            res.append(
                _model(name, base + shift + (first_only if k == 0 else 0.0) + rng.normal(0, 0.05, n), name.lower()[:-2])
            )
        for r in res:
            r["winobias"]["items"] = {c: list(v) for c, v in r["winobias"]["items"].items()}
        p = tiny.model_copy(
            update={"training": tiny.training.model_copy(update={"seed": seed}), "run_name": f"tiny-s{seed}"}
        )
        runs.append(Run(f"tiny-s{seed}", tiny.run_dir, p, res))
    return runs


def test_recipe_level_separates_a_recipe_effect_from_one_lucky_seed(tiny):
    """Three training seeds of one recipe: a model 0.3 above Base in every seed is a real recipe difference;
    one 0.3 above Base in one seed only is called different by the item-level test of that seed, and not by
    the Multi-Bootstrap over the seeds."""
    from hetfb_utils.analysis import comparison, recipes
    from hetfb_utils.analysis import runs as R

    runs = _seed_runs(tiny, {"HD-0.2-S": (0.3, 0.0), "HD-0.4-S": (0.0, 0.3)})
    groups = R.seed_groups(runs)
    assert len(groups) == 1 and groups[0].seeds == [1, 2, 3]
    d = recipes.recipe_differences(groups)
    vb = d[(d.reference == "Base") & (d.metric == "Bias")].set_index("model")
    assert vb.loc["HD-0.2-S", "real"] and vb.loc["HD-0.2-S", "lo"] > 0.2
    assert not vb.loc["HD-0.4-S", "real"]
    assert vb.loc["HD-0.4-S", "conclusion"].startswith("recipe, exploratory (3 vs 0 seeds")
    item = comparison.per_run(runs)
    first = item[(item.run == "tiny-s1") & (item.model == "HD-0.4-S") & (item.metric == "Bias")].iloc[0]
    assert first["differs_from_base"]  # the one-seed view is fooled by the lucky seed
    spread = comparison.seed_spread(item, groups)
    s = spread[(spread.metric == "Bias") & (spread.model == "HD-0.2-S")].iloc[0]
    vals = item[(item.metric == "Bias") & (item.model == "HD-0.2-S")]["value"]
    assert s["mean"] == pytest.approx(vals.mean()) and s["sd"] == pytest.approx(vals.std(ddof=1))
    mix = runs[1].params.model_copy(update={"selection": tiny.selection.model_copy(update={"n_clusters": 2})})
    other = runs[:1] + [R.Run("other-mix", tiny.run_dir, mix, runs[1].results)]  # another recipe: two groups
    assert [g.k for g in R.seed_groups(other)] == [1, 1]
    one = recipes.recipe_table(R.seed_groups(runs[:1]))
    assert set(one.loc[one.model != "Base", "conclusion"]) == {recipes.ONE_SEED}


def test_holm_adjustment_known_answer():
    from hetfb_utils.common.stats import holm

    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 -> kept at 0.06 (step-down monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == pytest.approx([0.5])


def test_verdict_rule():
    from hetfb_utils.analysis.claims import verdict

    assert verdict(0.01, 0.005, 0.995) == "supported"
    assert verdict(0.01, 0.995, 0.005) == "contradicted"
    assert verdict(0.2, 0.1, 0.9) == "not distinguishable"


def _claim_groups(tiny, hd_shift: float, acc_shift: float, n: int = 300, seeds=(1, 2, 3, 4, 5)):
    """Seed groups whose HD-0.2-S differs from Base by `hd_shift` in Bias and `acc_shift` in Accuracy (items
    shared, small seed and item noise)."""
    from hetfb_utils.analysis import runs as R

    runs = _seed_runs(tiny, {"HD-0.2-S": (hd_shift, 0.0)}, n=n, seeds=seeds)
    rng = np.random.default_rng(11)
    for r in runs:
        for m in r.results:
            shift = acc_shift if m["model"] == "HD-0.2-S" else 0.0
            m["winobias"]["items"]["Accuracy"] = list(0.5 + shift + rng.normal(0, 0.01, n))
    return R.seed_groups(runs)


@pytest.mark.parametrize(
    "acc_shift,expected",
    [
        (-0.01, "supported"),  # worse by 0.01, well inside the 0.05 margin
        (-0.05, "not distinguishable"),  # the interval straddles -0.05: the data cannot tell
        (-0.09, "contradicted"),  # the whole interval lies beyond the margin
    ],
)
def test_non_inferiority_claim_needs_the_interval_on_one_side_of_the_margin(tiny, acc_shift, expected):
    from hetfb_utils.analysis.claims import CLAIMS, score_claims

    c2 = [c for c in CLAIMS if c.id == "C2"]  # HD-0.2-S keeps Accuracy: worse than Base by at most 0.05
    row = score_claims(_claim_groups(tiny, -0.2, acc_shift), c2).iloc[0]
    assert row["verdict"] == expected, row.to_dict()
    assert row["tests"] == "the paper's comparison" and row["conclusion"].startswith("recipe (5 vs 0 seeds")


def test_claims_are_holm_adjusted_and_name_the_comparison_they_test(tiny):
    from hetfb_utils.analysis.claims import CLAIMS, score_claims

    df = score_claims(_claim_groups(tiny, -0.2, 0.0)).set_index("id")
    tested = df[df["verdict"] != "not tested"]
    assert set(tested.index) >= {"C1", "C2", "C10", "C11"}
    assert (tested["p_holm"] >= tested["p"] - 1e-12).all() and (tested["p_holm"] <= 1).all()
    assert df.loc["C1", "verdict"] == "supported" and df.loc["C1", "estimate"] < 0
    assert df.loc["C8", "verdict"] == "not tested" and "HD-0.2-R" in df.loc["C8", "comparison"]
    assert len(df) == len(CLAIMS)
    three = score_claims(_claim_groups(tiny, -0.2, 0.0, seeds=(1, 2, 3))).set_index("id")
    assert three.loc["C1", "verdict"] == "supported (exploratory)"


def test_a_claim_scored_on_another_comparison_says_so(tiny):
    from hetfb_utils.analysis.claims import Claim, score_claims

    c = Claim("Z", "filtered beats full", "test", (("HD-0.6-R", "HD-1.0-R"), ("HD-0.2-S", "Base")), "Bias", "lower")
    row = score_claims(_claim_groups(tiny, -0.2, 0.0), [c]).iloc[0]
    assert row["comparison"] == "HD-0.2-S − Base" and row["tests"].startswith("not the paper's HD-0.6-R − HD-1.0-R")


def test_per_variant_stage_verdicts_are_holm_adjusted_across_the_variants(tmp_path):
    """Three variants' PPO gains, raw p 0.01 / 0.04 / 0.03: each 'CI above 0' alone, but after Holm across the
    three (0.03, 0.06, 0.06) only the first raised held-out reward; a negative gain never counts as raised."""
    import json

    from hetfb_utils.common import load_params
    from hetfb_utils.training.stages import stage_dir
    from hetfb_utils.training.summary import training_summary

    p = load_params("tiny", [f"output_root={tmp_path}"])
    gains = {"wino": (1.0, 0.01), "hd-0.5": (0.8, 0.04), "hd-1.0": (-0.9, 0.03)}
    for v, (gain, pv) in gains.items():
        d = stage_dir(p, v, "ppo")
        d.mkdir(parents=True)
        metrics = {"heldout_reward_gain": gain, "heldout_reward_gain_p": pv, "heldout_reward_gain_lo": gain / 10}
        (d / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    df = training_summary(p).set_index("variant")
    assert df["ppo.raised_heldout_reward (Holm p < 0.05 across variants)"].to_dict() == {
        "wino": True,
        "hd-0.5": False,
        "hd-1.0": False,
    }


def test_boundaries_of_the_verdict_rules_and_holm_caps_at_one():
    """An interval touching 0 does not exclude it; a difference of exactly the tolerance is noise; Holm's adjusted
    p-values stop at 1."""
    assert not stats.excludes_zero(0.0, 1.0) and not stats.excludes_zero(-1.0, 0.0)
    assert stats.excludes_zero(1e-9, 1.0) and stats.excludes_zero(-1.0, -1e-9)
    assert not stats.real_difference(stats.TOLERANCE, 0.1, 0.2) and stats.real_difference(2 * stats.TOLERANCE, 0.1, 0.2)
    assert stats.holm([0.9, 0.8]).tolist() == [1.0, 1.0]
    assert stats.fmt_ci(0.4, None, 0.5) == "0.4" and stats.fmt_ci(0.4, 0.3, None) == "0.4"


def test_proportion_edges_and_count():
    none = stats.proportion(0, 0)
    assert none["n"] == 0 and none["at_chance"] and all(np.isnan(none[k]) for k in ("value", "lo", "hi", "p"))
    one = stats.proportion(1, 1)
    assert set(none) == set(one)
    assert one["value"] == 1.0 and one["n"] == 1 and one["at_chance"] and one["p"] == 0.5
    assert stats.proportion(30, 40)["n"] == 40


def test_interval_is_scipys_bca_and_resamples_ratio_items_whole():
    """A mean's interval is scipy's BCa bootstrap at the kit's resample count and seed (asymmetric on skewed items);
    a ratio of sums resamples each item's numerator and denominator together, which is far narrower than resampling
    them apart when they move together; constant items give a point, a constant numerator over varying denominators
    does not; two items are enough for an interval."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(7)
    x = rng.exponential(1.0, 60)
    v, lo, hi = stats.interval(x, seed=3)
    ref = bootstrap((x,), np.mean, method="BCa", n_resamples=stats.N_RESAMPLES, rng=np.random.default_rng(3))
    assert (lo, hi) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12) and hi - v > v - lo
    den = rng.integers(1, 30, 60).astype(float)
    num = np.round(0.6 * den + rng.normal(0, 0.5, 60)).clip(0, den)
    _, rlo, rhi = stats.interval(num, den, seed=3)
    apart = bootstrap(
        (num, den),
        lambda a, d, axis=-1: a.sum(axis) / d.sum(axis),
        paired=False,
        n_resamples=999,
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert rhi - rlo < 0.5 * (apart.high - apart.low)
    assert stats.interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    for dens in ([1.0, 2.0, 4.0], [1.0, 2.0, 2.0]):
        _, clo, chi = stats.interval([1.0, 1.0, 1.0], dens)
        assert clo < chi
    assert stats.interval([0.0, 1.0]) == (0.5, 0.0, 1.0)


def test_paired_interval_is_paired_percentile_and_reproducible():
    """The paired difference resamples items (A and B together): on items that vary a lot but whose difference is
    steady the interval is narrow; it is scipy's percentile bootstrap at the kit's resample count and seed, and the
    same call gives the same numbers. Identical scores over other denominators are still compared; two items are
    enough; arrays of different lengths are refused by name."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(11)
    base = rng.normal(0, 5, 80)
    a, b = base + 0.3 + rng.normal(0, 0.1, 80), base
    d = stats.paired(a, b, seed=5)
    assert d == stats.paired(a, b, seed=5) and d["delta_hi"] - d["delta_lo"] < 0.1 and d["delta_lo"] > 0.25
    ref = bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
        paired=True,
        method="percentile",
        n_resamples=stats.N_RESAMPLES,
        rng=np.random.default_rng(5),
    ).confidence_interval
    assert (d["delta_lo"], d["delta_hi"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    same = stats.paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], n_permutations=99)
    assert same["delta"] == pytest.approx(2.0 - 1.0) and same["p"] < 1.0
    x = rng.normal(0, 1, 30)
    y = x + rng.normal(0.1, 1, 30)
    assert stats.paired(x, y, seed=1) == stats.paired(x, y, seed=1)  # a p-value away from its floor, too
    two = stats.paired([1.0, 0.0], [0.0, 0.0], n_permutations=99)
    assert np.isfinite(two["delta_lo"]) and np.isfinite(two["p"])
    with pytest.raises(ValueError, match="same items"):
        stats.paired([1.0, 2.0], [1.0, 2.0, 3.0])
