"""Stage-5 figures: Table-1 metrics against the keep-fraction with their intervals, the model x metric
heatmap, WinoGender occupations against the share of women."""

from __future__ import annotations

import pandas as pd

from ..common.report import pyplot


def fig_metric_vs_fraction(ci: pd.DataFrame, columns: list[str]):
    """Each Table-1 metric against the keep-fraction with its 95 % interval as error bars, one line
    per selection strategy and S / R (Base, S and R of WinoGrande alone as lines with a band)."""
    plt, _ = pyplot()
    parts = ci["model"].str.extract(r"^([A-Z]+)-([0-9.]+)-([SR])$")
    frac = ci.assign(strategy=parts[0], fraction=parts[1].astype(float), kind=parts[2]).dropna(subset=["strategy"])
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.6), squeeze=False)
    for ax, c in zip(axes[0], columns):
        d = frac[frac["metric"] == c]
        for j, ((strategy, kind), g) in enumerate(d.groupby(["strategy", "kind"], sort=True)):
            g = g.sort_values("fraction")
            x = g["fraction"] + 0.008 * (j - 1)  # a small dodge so the bars do not overlap
            ax.errorbar(
                x,
                g["value"],
                yerr=[g["value"] - g["lo"], g["hi"] - g["value"]],
                marker="o",
                ms=4,
                capsize=3,
                lw=1.2,
                label=f"{strategy}-{kind}",
                ls="-" if kind == "S" else "--",
            )
        for name, color, ls in (("Base", "black", "--"), ("S", "C0", ":"), ("R", "C1", ":")):
            v = ci[(ci["model"] == name) & (ci["metric"] == c)]
            if len(v) and pd.notna(v["value"].iloc[0]):
                ax.axhline(v["value"].iloc[0], color=color, linestyle=ls, lw=1, label=name)
                if pd.notna(v["lo"].iloc[0]) and name == "Base":
                    ax.axhspan(v["lo"].iloc[0], v["hi"].iloc[0], color=color, alpha=0.08)
        ax.set_title(c)
        ax.set_xlabel("keep-fraction")
        ax.legend(fontsize=6)
    fig.suptitle("Table-1 metrics vs keep-fraction (bars and grey band: 95 % CI over WinoBias pairs)", fontsize=10)
    fig.tight_layout()
    return fig


def fig_heatmap(table: pd.DataFrame, title: str, annot: pd.DataFrame | None = None):
    """Model x metric heatmap coloured by z-score per column, annotated with the values (or with
    `annot`'s strings, e.g. `0.41\n[0.38, 0.45]`)."""
    plt, sns = pyplot()
    t = table.set_index("model").select_dtypes("number")
    z = (t - t.mean()) / t.std(ddof=0).replace(0, 1)
    labels = t if annot is None else annot.set_index("model").reindex(index=t.index, columns=t.columns).fillna("")
    tall = annot is not None
    fig, ax = plt.subplots(figsize=(1.8 * t.shape[1] + 3, (0.7 if tall else 0.45) * t.shape[0] + 1.5))
    sns.heatmap(
        z,
        annot=labels,
        fmt="" if tall else ".3g",
        cmap="vlag",
        cbar=False,
        ax=ax,
        annot_kws={"fontsize": 7} if tall else None,
    )
    ax.set_title(title + " (colour: z-score per column)")
    fig.tight_layout()
    return fig


HEATMAP_METRICS = {  # table -> {metric: label} of the model x metric heatmap (None: every metric as named)
    "table1_winobias": None,
    "winogrande": {"accuracy": "WinoGrande acc"},
    "oasst_heldout": {"likelihood_pref_accuracy": "OASST likelihood pref"},
}


def fig_models_by_metrics(ci: dict[str, pd.DataFrame], title: str, metrics: dict | None = None):
    """The model x metric heatmap of a run from its interval tables (`ci[table]`: model, metric, value, lo, hi),
    each cell annotated `value [lo, hi]`; `metrics` (default `HEATMAP_METRICS`) picks and names the columns."""
    parts = []
    for table, names in (metrics or HEATMAP_METRICS).items():
        if table in ci:
            d = ci[table] if names is None else ci[table][ci[table]["metric"].isin(names)].replace({"metric": names})
            parts.append(d)
    cells = pd.concat(parts, ignore_index=True)
    cells["cell"] = [f"{v:.3g}\n[{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(cells["value"], cells["lo"], cells["hi"])]
    order = list(dict.fromkeys(cells["metric"]))
    values = cells.pivot(index="model", columns="metric", values="value")[order]
    annot = cells.pivot(index="model", columns="metric", values="cell")[order]
    models = list(dict.fromkeys(cells["model"]))
    return fig_heatmap(values.loc[models].reset_index(), title, annot.loc[models].reset_index())


def fig_winogender(per_model: dict, stats: pd.DataFrame):
    """Share of female-pronoun sentences resolved to the occupation vs BLS % women, per occupation."""
    plt, sns = pyplot()
    st = stats.set_index("occupation")["bls_pct_female"].astype(float)
    rows = [
        {"model": m, "occupation": o, "resolved_to_occupation": v, "bls_pct_female": st.get(o)}
        for m, d in per_model.items()
        for o, v in d.items()
        if o in st.index
    ]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if len(df):
        sns.scatterplot(df, x="bls_pct_female", y="resolved_to_occupation", hue="model", ax=ax, s=18)
    ax.set_title("WinoGender: female pronoun -> occupation vs BLS % women")
    fig.tight_layout()
    return fig
