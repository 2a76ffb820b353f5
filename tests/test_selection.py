"""Quality + diversity selection on real union rows (params/tiny.yaml)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hetfb_utils import selection as S
from hetfb_utils.common import load_params


def test_variant_sizes_stratified(tiny_built):
    p, u, emb, sel = tiny_built
    n = u.union["source"].value_counts()
    for f in p.selection.fractions:
        v = sel.variants[f"hd-{f:g}" if f != 1 else "hd-1.0"]
        got = v["source"].value_counts()
        for src, total in n.items():
            assert got[src] == max(1, round(f * total))  # each source keeps its share
    assert set(sel.variants["wino"]["source"]) == {"winogrande"}
    assert len(sel.variants["wino"]) == n["winogrande"]


def test_top_quality_within_cluster_and_nested(tiny_built):
    p, u, emb, sel = tiny_built
    df = sel.union
    half = df["kept_hd-0.5"]
    scored = df[df["quality"].notna()]
    for _, g in scored.groupby("cluster"):
        kept, dropped = g[half.loc[g.index]], g[~half.loc[g.index]]
        if len(kept) and len(dropped):  # every kept row beats every dropped one
            assert kept["quality"].min() >= dropped["quality"].max()
    assert (df["kept_hd-0.5"] <= df["kept_hd-1.0"]).all()  # nested variants
    assert df["kept_hd-1.0"].all()
    ids = set(sel.variants["hd-0.5"]["prompt_id"])
    assert ids.isdisjoint(set(df.loc[~half, "prompt_id"]))  # never kept and dropped at once


def test_clusters_cover_sources(tiny_built):
    p, u, emb, sel = tiny_built
    assert sel.union["cluster"].nunique() == p.selection.n_clusters
    assert sel.clusters["rows"].sum() == len(u.union)


def test_deterministic_and_seed_sensitive(tiny_built):
    p, u, emb, sel = tiny_built
    again = S.select(u.union, emb, p)
    assert again.report["variants"] == sel.report["variants"]
    other = S.select(u.union, emb, load_params("tiny", [f"cache_dir={p.cache_path}", "seed=5"]))
    assert other.report["variants"]["hd-0.5"]["content_hash"] != sel.report["variants"]["hd-0.5"]["content_hash"]


def test_per_source_clustering(tiny_built):
    p, u, emb, _ = tiny_built
    q = load_params("tiny", [f"cache_dir={p.cache_path}", "selection.cluster_scope=source"])
    sel = S.select(u.union, emb, q)
    assert all(":" in c and c.split(":")[0] == s for c, s in zip(sel.union["cluster"], sel.union["source"]))


def test_keep_fraction_hand_made():
    df = pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(10)],
            "source": ["a"] * 6 + ["b"] * 4,
            "cluster": ["c0", "c0", "c0", "c1", "c1", "c1", "c0", "c0", "c1", "c1"],
            "quality": [0.9, 0.1, 0.5, 0.3, 0.8, 0.2, None, None, None, None],
        }
    )
    keep = S.keep_fraction(df, 1 / 3, seed=0)
    assert set(df.loc[keep & (df.source == "a"), "prompt_id"]) == {"p0", "p4"}  # best of each cluster
    assert keep[df.source == "b"].sum() == 1


def test_embedding_cache_reuses(tmp_path, tiny_built):
    p = tiny_built[0]
    cache = S.EmbeddingCache(tmp_path, p.selection.embedder)
    a = cache.embed(["hello world", "what is a GPU?"], progress=False)
    b = S.EmbeddingCache(tmp_path, p.selection.embedder)
    assert b.path.is_file() and len(b.store._keys) == 2
    np.testing.assert_allclose(b.embed(["what is a GPU?"], progress=False)[0], a[1], atol=1e-6)
    assert np.isclose(np.linalg.norm(a[0]), 1.0, atol=1e-4)


def test_saved_variants_and_report(tiny_built):
    p, u, emb, sel = tiny_built
    ds = S.load_variant(p, "hd-0.5")
    assert len(ds) == len(sel.variants["hd-0.5"])
    import json

    rep = json.loads((p.run_dir / "data" / "selection_report.json").read_text())
    assert rep["variants"]["hd-0.5"]["content_hash"] == S.content_hash(ds.to_pandas())
    assert rep["provenance"]["seed"] == p.seed and rep["drops_stage1"]
    import pytest

    with pytest.raises(FileNotFoundError, match="hd-0.7"):
        S.load_variant(p, "hd-0.7")


def test_control_strategies_match_hd_sizes_per_source_and_are_seeded(tiny_built):
    """rand-f / q-f / div-f keep exactly hd-f's rows per source; deterministic for a seed, another
    seed draws another random subset; q-f keeps the best quality per source."""
    p, u, emb, _ = tiny_built
    over = [f"cache_dir={p.cache_path}", "selection.strategies=[quality_diversity,random,quality,diversity]"]
    q = load_params("tiny", over)
    assert q.variant_names == [
        "wino",
        "hd-0.5",
        "hd-1.0",
        "rand-0.5",
        "rand-1.0",
        "q-0.5",
        "q-1.0",
        "div-0.5",
        "div-1.0",
    ]
    sel = S.select(u.union, emb, q)
    for f in ("0.5", "1.0"):
        hd = sel.variants[f"hd-{f}"]["source"].value_counts().to_dict()
        for s in ("rand", "q", "div"):
            assert sel.variants[f"{s}-{f}"]["source"].value_counts().to_dict() == hd, (s, f)
    assert sel.report["variants"]["rand-0.5"]["content_hash"] != sel.report["variants"]["hd-0.5"]["content_hash"]
    assert sel.report["variants"]["rand-1.0"]["content_hash"] == sel.report["variants"]["hd-1.0"]["content_hash"]
    again = S.select(u.union, emb, q)
    assert again.report["variants"] == sel.report["variants"]
    other = S.select(u.union, emb, load_params("tiny", over + ["seed=7"]))
    assert other.report["variants"]["rand-0.5"]["content_hash"] != sel.report["variants"]["rand-0.5"]["content_hash"]
    df = sel.union
    for _src, g in df[df["quality"].notna()].groupby("source"):  # quality: best per source, no clusters
        kept, dropped = g[g["kept_q-0.5"]], g[~g["kept_q-0.5"]]
        if len(kept) and len(dropped):
            assert kept["quality"].min() >= dropped["quality"].max()
    table = pd.DataFrame(sel.report["strategies"])
    assert set(table["strategy"]) == {"quality_diversity", "random", "quality", "diversity"}
    assert (table.loc[table["strategy"] == "quality_diversity", "jaccard_with_hd"] == 1).all()
    assert table.groupby("fraction")["rows"].nunique().eq(1).all()


def test_the_audits_shuffled_control_sits_at_chance_on_a_planted_label():
    """Pairs that share a direction (as OASST's chosen reply is usually the longer) and a planted label: the probe
    beats chance, and the shuffled control (the mean over random labelings) covers 0.5 at every seed. One shuffle,
    the control the audit used, reads far from 0.5 with a Wilson interval that excludes it at most seeds."""
    from sklearn.linear_model import LogisticRegression

    from hetfb_utils.common.stats import proportion
    from hetfb_utils.selection import signal

    one_shuffle_off = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n, d = 160, 4
        u = np.zeros(d)
        u[0] = 1.0
        diff = u + rng.normal(0, 0.5, (n, d))  # every pair leans the same way along u (a few clean dimensions)
        groups = np.arange(n)
        control = signal.shuffled_control(diff, groups, seed, n=30)
        assert control["lo"] <= 0.5 <= control["hi"], control
        assert signal.probe_accuracy(diff, groups, seed).mean() > 0.6 and control["p"] < 0.05
        x, y = signal._signed(diff, seed)  # the old control: one random labeling, a Wilson interval
        y_shuffled = np.where(rng.random(n) < 0.5, 1 - y, y)
        correct = np.zeros(n, bool)
        for train, test in signal._folds(groups, y):
            clf = LogisticRegression(fit_intercept=False, max_iter=2000).fit(x[train], y_shuffled[train])
            correct[test] = clf.predict(x[test]) == y[test]
        one_shuffle_off += proportion(int(correct.sum()), n)["at_chance"] is False
    assert one_shuffle_off >= 3  # the single shuffle missed 0.5 at half the seeds: it was not a control
