"""Stage-1 figures."""

from __future__ import annotations

import pandas as pd

from ..common.report import pyplot


def fig_union(union: pd.DataFrame):
    """Composition of the union per source, and the quality label's distribution per source."""
    plt, sns = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    counts = union.groupby(["source", "supervision"]).size().reset_index(name="rows")
    sns.barplot(counts, x="source", y="rows", hue="supervision", ax=ax[0])
    ax[0].set_title("union: prompts per source")
    scored = union[union["quality"].notna()]
    if len(scored):
        sns.histplot(scored, x="quality", hue="source", bins=30, log_scale=(True, False), ax=ax[1])
        ax[1].set_title("quality = max - min of the label (log x)")
    else:
        ax[1].set_axis_off()
    fig.tight_layout()
    return fig
