"""Stage-2 figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..common.report import pyplot


def projection(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """The prompt embeddings projected on their first two principal components (what the figure plots)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(emb) if len(emb) > 2 else np.zeros((len(emb), 2))


def fig_selection(sel: pd.DataFrame, variant: str, emb: np.ndarray, seed: int = 0):
    """2-D projection (PCA) of the prompt embeddings by source and by kept/dropped in `variant`, and the quality of
    the scored prompts kept and dropped."""
    plt, sns = pyplot()
    xy = projection(emb, seed)
    sel = sel.assign(x=xy[:, 0], y=xy[:, 1])
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    sns.scatterplot(sel, x="x", y="y", hue="source", s=10, linewidth=0, ax=ax[0])
    ax[0].set_title("prompt embeddings (PCA), by source")
    kept = sel[f"kept_{variant}"].map({True: "kept", False: "dropped"})
    sns.scatterplot(
        sel.assign(status=kept),
        x="x",
        y="y",
        hue="status",
        hue_order=["kept", "dropped"],
        palette={"kept": "tab:green", "dropped": "lightgrey"},
        s=10,
        linewidth=0,
        ax=ax[1],
    )
    ax[1].set_title(f"{variant}: kept vs dropped")
    scored = sel.assign(status=kept)[sel["quality"].notna()]  # (assigning to an empty frame adopts the index)
    if len(scored):
        sns.histplot(
            scored,
            x="quality",
            hue="status",
            bins=30,
            log_scale=(True, False),
            ax=ax[2],
            hue_order=["kept", "dropped"],
            palette={"kept": "tab:green", "dropped": "grey"},
        )
        ax[2].set_title(f"{variant}: quality of scored prompts")
    fig.tight_layout()
    return fig
