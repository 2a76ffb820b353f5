"""Stage 2: keep a high-quality, diverse subset D_train of the union (paper §2.4-2.5, App. A.3).

* quality of a prompt = max - min of the chosen numeric label over its responses (stage 1);
  binary / pairwise sources have no ordered score and are not quality-ranked;
* diversity: embed every prompt (sentence-transformers, all-MiniLM-L6-v2), k-means (k=10,
  10 restarts) over the union (or each source: `selection.cluster_scope`);
* keep-fraction f: inside every (source, cluster) group rows are ordered by quality (scored
  sources) or by a seeded random draw (unscored ones); each source keeps round(f * its size) rows,
  taken by their position inside their cluster, so every cluster keeps ~f of itself, every
  source keeps its share of the union, and the variants are nested (hd-0.2 ⊂ hd-0.4 ⊂ ...).

Controls (`selection.strategies`), each keeping exactly as many rows per source as `hd-f`:
`random` (`rand-f`: a seeded draw per source: selection vs size), `quality` (`q-f`: best quality
per source, no clusters), `diversity` (`div-f`: the cluster-balanced draw without quality).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.params import Params, variant_name


# --------------------------------------------------------------------------- clustering
def cluster(emb: np.ndarray, sources: pd.Series, params: Params) -> np.ndarray:
    """k-means cluster label per row ("c3" for the union, "oasst:c3" per source)."""
    from sklearn.cluster import KMeans

    sel = params.selection
    labels = np.empty(len(emb), dtype=object)
    groups = (
        [(None, np.arange(len(emb)))]
        if sel.cluster_scope == "union"
        else [(s, np.flatnonzero(sources.to_numpy() == s)) for s in pd.unique(sources)]
    )
    for name, idx in groups:
        k = min(sel.n_clusters, len(idx))
        km = KMeans(n_clusters=k, n_init=sel.n_init, random_state=params.data_seed).fit(emb[idx])
        prefix = f"{name}:" if name is not None else ""
        labels[idx] = [f"{prefix}c{c}" for c in km.labels_]
    return labels


def _tiebreak(prompt_ids: pd.Series, seed: int) -> np.ndarray:
    return np.array(
        [int(hashlib.sha1(f"{seed}:{p}".encode()).hexdigest()[:12], 16) for p in prompt_ids], dtype=np.float64
    )


# strategy -> (groups inside which rows are ranked, whether quality ranks them)
STRATEGIES = {
    "quality_diversity": (["source", "cluster"], True),
    "diversity": (["source", "cluster"], False),
    "quality": (["source"], True),
    "random": (["source"], False),
}


def _groups(df: pd.DataFrame) -> pd.Series:
    """The unit of a draw: the union's `group_id` (twins, trees), else the row."""
    return df["group_id"].fillna(df["prompt_id"]) if "group_id" in df else df["prompt_id"]


def selection_order(df: pd.DataFrame, seed: int, strategy: str = "quality_diversity") -> pd.Series:
    """Position of each row inside its group, as a quantile in (0, 1). quality_diversity (the
    paper): groups are (source, cluster), best quality first for scored rows, seeded random order for
    unscored rows; the controls change the groups and/or drop quality (`STRATEGIES`).

    Unscored rows are drawn by whole `group_id` (WinoBias and WinoGrande twins): every row of a twin pair
    takes the pair's position, in the cluster of its first row, so a keep-fraction keeps both twins or
    neither and the source's he / she (option 1 / 2) balance survives the draw."""
    by, use_quality = STRATEGIES[strategy]
    salt = 0 if strategy in ("quality_diversity", "diversity") else 2  # the controls draw their own order
    units = _groups(df)
    df = df.assign(
        _unit=units.to_numpy(),
        _tbg=_tiebreak(units, seed + salt),
        _tb=_tiebreak(df["prompt_id"], seed + salt),
        _q=df["quality"].fillna(-np.inf) if "quality" in df else -np.inf,
    )
    if "cluster" in by:  # a unit sits in the cluster of its first row
        df["cluster"] = df.groupby("_unit", sort=False)["cluster"].transform("first")
    pos = pd.Series(np.nan, index=df.index)
    for _, g in df.groupby(by, sort=False):
        if use_quality and g["quality"].notna().any():
            g = g.sort_values(["_q", "_tb"], ascending=[False, True])
            pos.loc[g.index] = (np.arange(len(g)) + 0.5) / len(g)
        else:
            g = g.sort_values(["_tbg", "_tb"])
            rank = pd.factorize(g["_unit"])[0]  # units in their drawn order
            pos.loc[g.index] = (rank + 0.5) / (rank.max() + 1)
    return pos


def keep_fraction(df: pd.DataFrame, fraction: float, seed: int, order: pd.Series | None = None) -> pd.Series:
    """Boolean mask of the rows kept at `fraction`: round(fraction * size) rows of every source,
    by position in their group (`order`; default: the paper's, position in cluster). Rows of one unit
    (`group_id`) with one position are taken one after the other, so a cut splits at most one unit."""
    if order is None:
        order = df["_order"] if "_order" in df else selection_order(df, seed)
    tbg = _tiebreak(_groups(df), seed + 1)
    tb = _tiebreak(df["prompt_id"], seed + 1)
    keep = pd.Series(False, index=df.index)
    for _, g in df.groupby("source", sort=False):
        n_keep = max(1, int(round(fraction * len(g)))) if len(g) else 0
        at = df.index.get_indexer(g.index)
        ranked = pd.DataFrame({"o": order.loc[g.index], "g": tbg[at], "t": tb[at]}, index=g.index).sort_values(
            ["o", "g", "t"]
        )
        keep.loc[ranked.index[:n_keep]] = True
    return keep


# --------------------------------------------------------------------------- variants
@dataclass
class SelectionResult:
    """Stage 2's result: the union with clusters and kept flags, the variants, the summary tables, the report."""

    union: pd.DataFrame  # union + cluster, _order, kept_<variant> columns
    variants: dict[str, pd.DataFrame]
    summary: pd.DataFrame  # rows in / kept per variant and source
    clusters: pd.DataFrame  # rows per cluster and source, kept per variant
    report: dict


def content_hash(df: pd.DataFrame) -> str:
    """A 16-hex hash of a variant's rows (what keys every training stage's data)."""
    cols = ["prompt_id", "prompt", "context", "chosen", "rejected"]
    blob = json.dumps(df.sort_values("prompt_id")[cols].values.tolist())
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def select(union: pd.DataFrame, emb: np.ndarray, params: Params) -> SelectionResult:
    """Clusters, the quality x diversity order, and every variant (and control) of the params, with summary tables."""
    sel = params.selection
    df = union.copy()
    df["cluster"] = cluster(emb, df["source"], params)
    df["_order"] = selection_order(df, params.data_seed)

    variants: dict[str, pd.DataFrame] = {}
    if sel.wino_variant:
        df["kept_wino"] = df["source"] == sel.wino_source
    for strategy in sel.strategies:
        order = df["_order"] if strategy == "quality_diversity" else selection_order(df, params.data_seed, strategy)
        for f in sel.fractions:
            df[f"kept_{variant_name(f, strategy)}"] = keep_fraction(df, f, params.data_seed, order)
    cols = list(union.columns) + ["cluster"]
    summary_rows, cluster_rows = [], []
    for name in params.variant_names:
        mask = df[f"kept_{name}"]
        variants[name] = df.loc[mask, cols].reset_index(drop=True)
        for src, g in df.groupby("source", sort=False):
            summary_rows.append(
                {
                    "variant": name,
                    "source": src,
                    "rows_in": len(g),
                    "kept": int(mask.loc[g.index].sum()),
                    "dropped_not_selected": int((~mask.loc[g.index]).sum()),
                }
            )
    summary = pd.DataFrame(summary_rows)
    summary["kept_share"] = summary["kept"] / summary.groupby("variant")["kept"].transform("sum")
    summary["union_share"] = summary["rows_in"] / summary.groupby("variant")["rows_in"].transform("sum")
    for (c, s), g in df.groupby(["cluster", "source"], sort=True):
        row = {
            "cluster": c,
            "source": s,
            "rows": len(g),
            "quality_mean": float(g["quality"].mean()) if g["quality"].notna().any() else None,
        }
        for name in params.variant_names:
            row[f"kept_{name}"] = int(g[f"kept_{name}"].sum())
        cluster_rows.append(row)
    clusters = pd.DataFrame(cluster_rows)
    report = {
        "variants": {
            n: {"rows": len(v), "content_hash": content_hash(v), "per_source": v["source"].value_counts().to_dict()}
            for n, v in variants.items()
        },
        "strategies": strategy_comparison(df, params).to_dict("records"),
        "union_rows": len(df),
        "selection": sel.model_dump(mode="json"),
        "seed": params.data_seed,
    }
    return SelectionResult(df, variants, summary, clusters, report)


def strategy_comparison(df: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Per fraction, the strategies side by side: rows (equal per source by construction), mean
    quality of the scored rows kept, clusters covered, and the overlap (Jaccard) with `hd-f`."""
    rows = []
    n_clusters = df["cluster"].nunique()
    for f in params.selection.fractions:
        hd = (
            set(df.loc[df[f"kept_{variant_name(f)}"], "prompt_id"])
            if "quality_diversity" in params.selection.strategies
            else None
        )
        for strategy in params.selection.strategies:
            name = variant_name(f, strategy)
            kept = df[df[f"kept_{name}"]]
            ids = set(kept["prompt_id"])
            rows.append(
                {
                    "fraction": f,
                    "strategy": strategy,
                    "variant": name,
                    "rows": len(kept),
                    **{f"rows_{s}": int((kept["source"] == s).sum()) for s in pd.unique(df["source"])},
                    "mean_quality": float(kept["quality"].mean()) if kept["quality"].notna().any() else None,
                    "clusters_covered": int(kept["cluster"].nunique()),
                    "clusters": n_clusters,
                    "jaccard_with_hd": len(ids & hd) / len(ids | hd) if hd is not None and ids | hd else None,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- stage I/O
def variants_dir(params: Params) -> Path:
    """`<run>/data/variants`."""
    return params.run_dir / "data" / "variants"


def save_selection(
    result: SelectionResult, params: Params, drops: pd.DataFrame | None = None, extra: dict | None = None
) -> Path:
    """Stage 2's outputs: every variant, the selection table, the report (with stage 1's drops)."""
    from ..common.report import atomic_write_json, atomic_write_parquet, provenance

    vdir = variants_dir(params)
    for name, v in result.variants.items():
        atomic_write_parquet(v, vdir / f"{name}.parquet")
    keep_cols = ["prompt_id", "source", "cluster", "quality"] + [
        c for c in result.union.columns if c.startswith("kept_")
    ]
    atomic_write_parquet(result.union[keep_cols], params.run_dir / "data" / "selection.parquet")
    report = dict(result.report)
    report["drops_stage1"] = drops.to_dict("records") if drops is not None else []
    report["provenance"] = provenance(params)
    report.update(extra or {})
    return atomic_write_json(report, params.run_dir / "data" / "selection_report.json")


def load_variant(params: Params, name: str):
    """A saved D_train variant as a `datasets.Dataset` (clear error when missing or empty)."""
    from datasets import Dataset

    path = variants_dir(params) / f"{name}.parquet"
    if not path.is_file():
        have = sorted(p.stem for p in variants_dir(params).glob("*.parquet"))
        raise FileNotFoundError(
            f"variant '{name}' not found at {path}. Built variants: {have or 'none'} "
            f"— run stages 1-2 first (notebooks 01-02, or "
            f"`python -m hetfb_utils run <params> --only data`)."
        )
    df = pd.read_parquet(path)
    if df.empty:
        raise ValueError(f"variant '{name}' at {path} is empty: raise the keep-fraction or add rows")
    return Dataset.from_pandas(df, preserve_index=False)
