"""The run's tables from its evaluation results: Table 1 (ours, the paper's, side by side) and the
other benchmarks' tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

PAPER_TABLE1 = pd.DataFrame(
    [
        ("Base", 0.4585, 0.0010, 3.0393, 0.9482, 0.9482),
        ("S", 1.1721, 0.1553, 10.3180, 0.5953, 0.6553),
        ("R", 0.9247, 0.0098, 4.2139, 0.9457, 0.9457),
        ("HD-0.2-S", 0.4436, 0.0580, 4.5856, 0.9204, 0.9204),
        ("HD-0.4-S", 0.7798, 0.0548, 6.3741, 0.8788, 0.9394),
        ("HD-0.6-S", 0.7947, 0.0407, 7.5564, 0.8327, 0.8927),
        ("HD-1.0-S", 0.4117, 0.0333, 3.8851, 0.9533, 0.9533),
        ("HD-0.2-R", 0.4330, 0.0580, 3.0892, 0.9482, 0.9482),
        ("HD-0.4-R", 0.4287, 0.0548, 2.9852, 0.9602, 0.9508),
        ("HD-0.6-R", 0.4727, 0.0010, 2.9472, 0.9646, 0.9571),
        ("HD-1.0-R", 0.3629, 0.0068, 3.1570, 0.9583, 0.9583),
    ],
    columns=["model", "Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"],
)
TABLE1_COLUMNS = ["Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"]


def table1(results: list[dict]) -> pd.DataFrame:
    """Table 1 of the run's results (one row per model; a model that failed keeps its row with the error)."""
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"model": r["model"], **dict.fromkeys(TABLE1_COLUMNS, np.nan), "error": r["error"]})
        else:
            rows.append({"model": r["model"], **{c: r["winobias"][c] for c in TABLE1_COLUMNS}})
    return pd.DataFrame(rows)


def side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """Our Table 1 beside the paper's (LLaMA-7B), row by row."""
    paper = PAPER_TABLE1.set_index("model").add_suffix(" [paper]")
    mine = ours.set_index("model")[TABLE1_COLUMNS]
    cols = [x for c in TABLE1_COLUMNS for x in (c, f"{c} [paper]")]
    return mine.join(paper, how="left")[cols].reset_index()


def other_tables(results: list[dict]) -> dict[str, pd.DataFrame]:
    """Every registered benchmark's plain table but Table 1 (one row per model: `Benchmark.row`), and the
    qualitative answers."""
    from .registry import benchmarks

    ok = [r for r in results if "error" not in r]
    out = {
        b.table: pd.DataFrame([{"model": r["model"], **b.row(r[b.name])} for r in ok if b.name in r])
        for b in benchmarks()
        if b.table and b.table != "table1_winobias" and any(b.name in r for r in ok)
    }
    out["qualitative"] = pd.DataFrame(
        [
            {"model": r["model"], "prompt": q, "answer": a}
            for r in ok
            if "qualitative" in r
            for q, a in r["qualitative"]["answers"].items()
        ]
    )
    return out
