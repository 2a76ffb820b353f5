"""Runs side by side: `python -m hetfb_utils compare RUN_DIR_OR_PARAMS...`, `seeds` and notebook 06.

A run is a finished run directory (or the params file that names one); its evaluation results with their
per-item values are `<run>/eval/results.json` (written by notebook 05). Two kinds of conclusion, labelled as
such in every table:

* **about models** (one training seed each; intervals over evaluation items): `runs` (every run's
  intervals), `controls` (each `RAND/Q/DIV-f` model minus its `HD-f` twin, same run, same items),
  `across_runs` (the same model name in a later run minus the first, on the items both scored);
* **about recipes** (runs that differ only in `training.seed` form a seed group; the Multi-Bootstrap resamples
  training seeds and items jointly): `recipes` (each model's value), `recipe_differences` (vs Base, controls,
  filtered vs full, R vs S, across groups), `table1_recipe`, the A/A calibration (`aa_summary`: how often each
  test calls runs of the same recipe different), where the variance comes from (`variance`) and what a
  decisive study would take (`design`), and the paper's claims scored (`claims`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..common.stats import seed_summary
from . import recipes
from .aa import aa_calibration
from .claims import score_claims
from .runs import Run, SeedGroup, code_line, labels, load_run, relative, seed_groups
from .uncertainty import CONTROL, MODEL_LEVEL, interval_tables, paired_rows

__all__ = ["Run", "compare", "compare_and_save", "load_run", "save_comparison", "summary_markdown"]


def per_run(runs: list[Run]) -> pd.DataFrame:
    """Every run's every model and metric with its interval and its difference from Base."""
    frames = []
    for label, r in zip(labels(runs), runs):
        for table, df in interval_tables(r.results, r.params).items():
            frames.append(df.assign(run=label, seed=r.seed, table=table))
    cols = [
        "run",
        "seed",
        "table",
        "model",
        "metric",
        "value",
        "lo",
        "hi",
        "n",
        "delta",
        "delta_lo",
        "delta_hi",
        "p",
        "differs_from_base",
        "conclusion",
    ]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _pairs(a: dict, b: dict, run: Run, run_a: str, model_a: str, run_b: str, model_b: str) -> list[dict]:
    return [
        {
            "table": r.pop("table"),
            "metric": r.pop("metric"),
            "run": run_a,
            "model": r.pop("model"),
            "reference_run": run_b,
            **r,
        }
        for r in paired_rows(a, b, run.params.eval_seed, model_a, model_b)
    ]


def controls(runs: list[Run]) -> pd.DataFrame:
    """Each control model minus its `HD-f` twin of the same run (same items)."""
    rows = []
    for label, r in zip(labels(runs), runs):
        ok = r.models()
        for name in ok:
            m = CONTROL.match(name)
            twin = f"HD-{m.group(2)}-{m.group(3)}" if m else None
            if twin in ok:
                rows += _pairs(ok[name], ok[twin], r, label, name, label, twin)
    return pd.DataFrame(rows)


def across_runs(runs: list[Run]) -> pd.DataFrame:
    """The same model name in each later run minus the first run, paired on the items both scored."""
    labs = labels(runs)
    rows = []
    ref = runs[0].models()
    for label, r in zip(labs[1:], runs[1:]):
        for name, x in r.models().items():
            if name in ref:
                rows += _pairs(x, ref[name], r, label, name, labs[0], name)
    return pd.DataFrame(rows)


def seed_spread(table: pd.DataFrame, groups: list[SeedGroup]) -> pd.DataFrame:
    """Mean ± sd over the seeds of each group (the spread of the one-seed point estimates)."""
    rows = []
    for g in groups:
        if g.k < 2:
            continue
        sub = table[table["run"].isin(g.run_labels)]
        for (t, model, metric), d in sub.groupby(["table", "model", "metric"], sort=False):
            rows.append({"group": g.label, "table": t, "model": model, "metric": metric, **seed_summary(d["value"])})
    return pd.DataFrame(rows)


def table1_recipe(rec: pd.DataFrame, diffs: pd.DataFrame) -> pd.DataFrame:
    """Table 1 per group: `value [lo, hi]` with `*` where the difference from Base is real, and the kind of
    conclusion (recipe: k seeds x n items, or one seed)."""
    from ..common.stats import fmt_ci
    from ..evaluation.tables import TABLE1_COLUMNS

    t = rec[rec["table"] == "table1_winobias"] if len(rec) else rec
    rows = []
    for (group, model), g in t.groupby(["group", "model"], sort=False) if len(t) else []:
        g = g.set_index("metric")
        vb = (
            diffs[
                (diffs["group"] == group)
                & (diffs["model"] == model)
                & (diffs["reference"] == "Base")
                & (diffs["table"] == "table1_winobias")
            ].set_index("metric")
            if len(diffs)
            else pd.DataFrame()
        )
        row = {"group": group, "model": model, "seeds": g["seeds"].iloc[0], "conclusion": g["conclusion"].iloc[0]}
        for c in TABLE1_COLUMNS:
            if c in g.index:
                star = " *" if c in vb.index and bool(vb.loc[c, "real"]) else ""
                row[c] = fmt_ci(g.loc[c, "estimate"], g.loc[c, "lo"], g.loc[c, "hi"]) + star
        rows.append(row)
    return pd.DataFrame(rows)


def compare(where: list[str | Path], aa: bool = True) -> dict[str, pd.DataFrame]:
    """Every view of the runs (see the module docstring) as frames. A run given twice is one error: comparing a run
    with itself says nothing, and counting it twice would count its seed twice."""
    runs = [load_run(w) for w in where]
    dirs = [r.dir.resolve() for r in runs]
    twice = sorted({str(w) for w, d in zip(where, dirs) if dirs.count(d) > 1})
    if twice:
        from ..common.errors import RunReadError

        raise RunReadError(f"{', '.join(twice)}: the same run is given more than once: give each run once")
    groups = seed_groups(runs)
    table = per_run(runs)
    rec = recipes.recipe_table(groups)
    diffs = recipes.recipe_differences(groups)
    out = {
        "runs": table,
        "controls": controls(runs),
        "across_runs": across_runs(runs) if len(runs) > 1 else pd.DataFrame(),
        "seeds": seed_spread(table, groups),
        "recipes": rec,
        "recipe_differences": diffs,
        "table1_recipe": table1_recipe(rec, diffs),
        "groups": pd.DataFrame(
            [
                {
                    "group": g.label,
                    "runs": ", ".join(g.run_labels),
                    "training_seeds": g.seeds,
                    "k": g.k,
                    "also_varies": "; ".join(f"{k}: {v}" for k, v in g.varies().items()) or "nothing recorded",
                }
                for g in groups
            ]
        ),
    }
    if aa:
        out["aa_comparisons"], out["aa_summary"] = aa_calibration(groups)
    minutes = {g.label: recipes.group_minutes(g) for g in groups}
    out["variance"], out["design"] = recipes.variance_split(groups, minutes)
    out["minutes"] = pd.DataFrame(
        [{"group": k, "train_minutes_per_model": v[0], "eval_minutes_per_item_model": v[1]} for k, v in minutes.items()]
    )
    out["claims"] = score_claims(groups)
    return out


def fig_deltas(diffs: pd.DataFrame, title: str, est: str = "delta", lo: str = "delta_lo", hi: str = "delta_hi"):
    """Forest plot: each paired difference with its 95 % interval, one panel per metric."""
    from ..common.report import pyplot

    plt, _ = pyplot()
    metrics = list(dict.fromkeys(diffs["metric"]))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.6 * len(metrics), 0.35 * diffs["model"].nunique() + 1.8), squeeze=False, sharey=True
    )
    for ax, m in zip(axes[0], metrics):
        d = diffs[diffs["metric"] == m].reset_index(drop=True)
        y = range(len(d))
        ax.errorbar(d[est], y, xerr=[d[est] - d[lo], d[hi] - d[est]], fmt="o", ms=4, capsize=3, color="C0")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(list(y), [f"{a} − {b}" for a, b in zip(d["model"], d["reference"])], fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.suptitle(title + " (95 % CI; the line is no difference)", fontsize=10)
    fig.tight_layout()
    return fig


def _line(r, est="delta", lo="delta_lo", hi="delta_hi") -> str:
    return f"{r[est]:+.3g} [{r[lo]:+.3g}, {r[hi]:+.3g}], p = {r['p']:.3g}"


def summary_markdown(out: dict[str, pd.DataFrame]) -> str:
    """The conclusions, worded by their intervals, each saying whether it is about models or recipes."""
    lines = []
    groups = out.get("groups", pd.DataFrame())
    for _, g in groups.iterrows():
        kind = (
            f"{g['k']} training seeds ({', '.join(f's{s}' for s in g['training_seeds'])}): recipe-level "
            "intervals (seeds x items)"
            if g["k"] > 1
            else "one training seed: the intervals cover evaluation "
            "items only (conclusions about these models, not their recipe)"
        )
        lines.append(f"**Group `{g['group']}`** ({g['runs']}): {kind}.")
        if g.get("also_varies", "nothing recorded") != "nothing recorded":
            lines.append(
                f"  - **Besides the training seed, these runs differ in**: {g['also_varies']}. A recipe-level "
                "interval assumes the seed is the only difference: rerun the group with one code and machine."
            )
    d = out.get("recipe_differences", pd.DataFrame())
    if len(d):
        t1 = d[d["table"] == "table1_winobias"]
        for (group, comp), x in t1.groupby(["group", "comparison"], sort=False):
            real = x[x["real"]]
            lines.append(
                f"- `{group}`, {comp} (Table 1; {x['conclusion'].iloc[0]}): {len(real)} of {len(x)} "
                "differences are real" + (":" if len(real) else "; the rest are not distinguishable.")
            )
            lines += [
                f"  - {r['model']} − {r['reference']}, {r['metric']}: {_line(r, 'estimate', 'lo', 'hi')}"
                for _, r in real.iterrows()
            ]
    c = out["controls"]
    if len(c):
        t1 = c[c["table"] == "table1_winobias"]
        real = t1[t1["real"]]
        lines.append(
            f"**Controls, per run** ({MODEL_LEVEL}; Table 1, control minus its HD twin): {len(real)} of "
            f"{len(t1)} paired differences are real on these items; without training seeds they do not "
            "say whether the selection (the recipe) makes the difference."
        )
    aa = out.get("aa_summary", pd.DataFrame())
    for _, r in aa.iterrows():
        lines.append(
            f"**A/A** ({r['test']}): {r['called_different']} of {r['comparisons']} comparisons of runs of the "
            f"same recipe called different: {r['false_alarm_rate']:.0%} [{r['lo']:.0%}, {r['hi']:.0%}] "
            "where 5 % is nominal."
        )
    cl = out.get("claims", pd.DataFrame())
    if len(cl):
        counts = cl["verdict"].value_counts().to_dict()
        lines.append(
            "**The paper's claims at this scale**: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + " (`claims.md`)."
        )
    return "\n".join(lines) or "_nothing to compare_"


def save_comparison(out: dict[str, pd.DataFrame], where: list[str | Path], out_dir: str | Path) -> Path:
    """`<out_dir>/<view>.{csv,md}` for every view, the forest plots and `summary.md` (which runs, from which
    directories, at which commit)."""
    from ..common.report import atomic_path, atomic_write_text

    out_dir = Path(out_dir)
    runs = [load_run(w) for w in where]
    codes = sorted({code_line(r.manifest) for r in runs})
    stamp = f"\n_runs: {', '.join(relative(r.dir) for r in runs)} · " + "; ".join(codes) + "_\n"
    for name, df in out.items():
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
        atomic_write_text(
            (df.to_markdown(index=False, floatfmt=".4g") if len(df) else "_(empty)_") + stamp, out_dir / f"{name}.md"
        )
    for name in ("controls", "across_runs"):
        d = out[name]
        if len(d):
            fig = fig_deltas(d[d["table"] == "table1_winobias"], f"{name}: Table-1 metrics (one seed each)")
            with atomic_path(out_dir / f"{name}_table1.png") as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    d = out.get("recipe_differences", pd.DataFrame())
    if len(d):
        t1 = d[d["table"] == "table1_winobias"]
        fig = fig_deltas(t1, "recipe differences: Table-1 metrics", "estimate", "lo", "hi")
        with atomic_path(out_dir / "recipe_differences_table1.png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    atomic_write_text(summary_markdown(out) + "\n" + stamp, out_dir / "summary.md")
    return out_dir


def default_out_dir(runs: list[Run], groups: list[SeedGroup] | None = None) -> Path:
    """`<output_root>/compare/<group names>`: where `compare` writes when no `--out` is given."""
    names = [g.label + (f"-{g.k}seeds" if g.k > 1 else "") for g in (groups or seed_groups(runs))]
    return runs[0].dir.parent / "compare" / "_vs_".join(dict.fromkeys(names))


def compare_and_save(
    where: list[str | Path], out_dir: str | Path | None = None, log=print
) -> tuple[dict[str, pd.DataFrame], Path]:
    """`compare` and `save_comparison` (the command line's `compare` and `seeds`, notebook 06); logs the summary.
    Returns (the frames, the directory they were saved in)."""
    out = compare(where)
    d = save_comparison(
        out,
        where,
        out_dir or default_out_dir([load_run(w) for w in where[:1]], seed_groups([load_run(w) for w in where])),
    )
    log(summary_markdown(out))
    log(f"tables and figures in {d}")
    return out, d
