"""Reports: atomic writes, tables (CSV + Markdown), figures (PNG), provenance stamps."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .params import REPO_ROOT, Params


def _umask() -> int:
    mask = os.umask(0o022)   # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename onto it only if the block succeeds, so a crash
    never leaves a half-written file that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes it 0600: give it the mode open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def atomic_write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(params: Params, **extra: Any) -> dict:
    """What produced an output: run, data, model, seed, code version."""
    from .readers import data_dir
    try:
        ddir = str(data_dir(params) or "hub")
    except Exception:  # noqa: BLE001 - provenance must never fail
        ddir = "unknown"
    return {"run": params.run_name, "seed": params.seed, "model": params.model.name_or_path,
            "data": ddir, "params_hash": params.digest(), "git": git_commit(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}


def stamp_line(params: Params, **extra: Any) -> str:
    p = provenance(params, **extra)
    return ("_run `{run}` · model `{model}` · data `{data}` · seed {seed} · params {params_hash} · "
            "git {git}_".format(**p))


def save_table(df: pd.DataFrame, name: str, params: Params, *, floatfmt: str = ".4f",
               caption: str | None = None, footnote: str | None = None, markdown: pd.DataFrame | None = None,
               **extra: Any) -> Path:
    """Write tables/<name>.csv and tables/<name>.md (`markdown` when given, e.g. cells with their
    intervals; with a footnote and a provenance line)."""
    tdir = params.run_dir / "tables"
    with atomic_path(tdir / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    md = []
    if caption:
        md.append(f"**{caption}**\n")
    shown = df if markdown is None else markdown
    flat = shown.apply(lambda c: c.str.replace("\n", "<br>", regex=False) if c.dtype == object and
                    c.map(lambda x: isinstance(x, str)).all() else c)  # one table row per row
    md.append(flat.to_markdown(index=False, floatfmt=floatfmt) if not shown.empty else "_(empty)_")
    if footnote:
        md.append("\n" + footnote)
    md.append("\n" + stamp_line(params, **extra) + "\n")
    atomic_write_text("\n".join(md), tdir / f"{name}.md")
    return tdir / f"{name}.csv"


def save_figure(fig, name: str, params: Params) -> Path:
    path = params.run_dir / "figures" / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate",
                 "sentence-transformers", "scikit-learn", "papermill", "pandas", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib
    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def fig_union(union: pd.DataFrame):
    """Composition of the union per source, and the quality label's distribution per source."""
    plt, sns = _plt()
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


def fig_selection(sel: pd.DataFrame, variant: str):
    """2-D projection of the prompt embeddings by source and by kept/dropped in `variant`."""
    plt, sns = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    sns.scatterplot(sel, x="x", y="y", hue="source", s=10, linewidth=0, ax=ax[0])
    ax[0].set_title("prompt embeddings (PCA), by source")
    kept = sel[f"kept_{variant}"].map({True: "kept", False: "dropped"})
    sns.scatterplot(sel.assign(status=kept), x="x", y="y", hue="status", hue_order=["kept", "dropped"],
                    palette={"kept": "tab:green", "dropped": "lightgrey"}, s=10, linewidth=0, ax=ax[1])
    ax[1].set_title(f"{variant}: kept vs dropped")
    scored = sel[sel["quality"].notna()].assign(status=kept)
    if len(scored):
        sns.histplot(scored, x="quality", hue="status", bins=30, log_scale=(True, False), ax=ax[2],
                     hue_order=["kept", "dropped"], palette={"kept": "tab:green", "dropped": "grey"})
        ax[2].set_title(f"{variant}: quality of scored prompts")
    fig.tight_layout()
    return fig


def fig_curves(log: pd.DataFrame, metrics: list[str], title: str, x: str = "step"):
    """Training curves (one line per variant) for the given log keys."""
    plt, sns = _plt()
    metrics = [m for m in metrics if m in log.columns]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        d = log[log[m].notna()]
        sns.lineplot(d, x=x, y=m, hue="variant", marker="o", ax=ax)
        ax.set_title(m)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig_metric_vs_fraction(ci: pd.DataFrame, columns: list[str]):
    """Each Table-1 metric against the keep-fraction with its 95 % interval as error bars, one line
    per selection strategy and S / R (Base, S and R of WinoGrande alone as lines with a band)."""
    plt, _ = _plt()
    parts = ci["model"].str.extract(r"^([A-Z]+)-([0-9.]+)-([SR])$")
    frac = ci.assign(strategy=parts[0], fraction=parts[1].astype(float), kind=parts[2]).dropna(subset=["strategy"])
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.6), squeeze=False)
    for ax, c in zip(axes[0], columns):
        d = frac[frac["metric"] == c]
        for j, ((strategy, kind), g) in enumerate(d.groupby(["strategy", "kind"], sort=True)):
            g = g.sort_values("fraction")
            x = g["fraction"] + 0.008 * (j - 1)          # a small dodge so the bars do not overlap
            ax.errorbar(x, g["value"], yerr=[g["value"] - g["lo"], g["hi"] - g["value"]], marker="o", ms=4,
                        capsize=3, lw=1.2, label=f"{strategy}-{kind}", ls="-" if kind == "S" else "--")
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
    plt, sns = _plt()
    t = table.set_index("model").select_dtypes("number")
    z = (t - t.mean()) / t.std(ddof=0).replace(0, 1)
    labels = t if annot is None else annot.set_index("model").reindex(index=t.index, columns=t.columns).fillna("")
    tall = annot is not None
    fig, ax = plt.subplots(figsize=(1.8 * t.shape[1] + 3, (0.7 if tall else 0.45) * t.shape[0] + 1.5))
    sns.heatmap(z, annot=labels, fmt="" if tall else ".3g", cmap="vlag", cbar=False, ax=ax,
                annot_kws={"fontsize": 7} if tall else None)
    ax.set_title(title + " (colour: z-score per column)")
    fig.tight_layout()
    return fig


def fig_winogender(per_model: dict, stats: pd.DataFrame):
    """Share of female-pronoun sentences resolved to the occupation vs BLS % women, per occupation."""
    plt, sns = _plt()
    st = stats.set_index("occupation")["bls_pct_female"].astype(float)
    rows = [{"model": m, "occupation": o, "resolved_to_occupation": v, "bls_pct_female": st.get(o)}
            for m, d in per_model.items() for o, v in d.items() if o in st.index]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if len(df):
        sns.scatterplot(df, x="bls_pct_female", y="resolved_to_occupation", hue="model", ax=ax, s=18)
    ax.set_title("WinoGender: female pronoun -> occupation vs BLS % women")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- summaries
def training_summary(params: Params) -> pd.DataFrame:
    """Final metrics of every trained stage of the run, one row per variant."""
    rows = []
    for v in params.train_variants:
        row: dict[str, Any] = {"variant": v}
        for stage in ("sft", "reward", "ppo", "dpo"):
            m = params.run_dir / "models" / v / stage / "manifest.json"
            if not m.is_file():
                continue
            man = json.loads(m.read_text())
            for k, val in (man.get("metrics") or {}).items():
                if isinstance(val, dict):      # e.g. reward accuracy per source
                    row.update({f"{stage}.{k}.{sub}": x for sub, x in val.items()})
                else:
                    row[f"{stage}.{k}"] = val
            row[f"{stage}.seconds"] = man.get("wall_time_s")
            row[f"{stage}.steps"] = man.get("steps")
        rows.append(row)
    df = pd.DataFrame(rows)
    if "sft.eval_loss" in df and "sft.base_eval_loss" in df:
        df["sft.learned (eval loss < base)"] = df["sft.eval_loss"] < df["sft.base_eval_loss"]
    if "reward.eval_accuracy" in df:           # Wilson 95 % CI of the held-out pairwise accuracy
        from .stats import proportion
        n = df.get("reward.eval_pairs", df.get("reward.eval_rows"))
        cis = [proportion(int(round(a * k)), int(k)) if pd.notna(a) and pd.notna(k) and k else None
               for a, k in zip(df["reward.eval_accuracy"], n if n is not None else [None] * len(df))]
        df["reward.eval_accuracy_lo"] = [c["lo"] if c else None for c in cis]
        df["reward.eval_accuracy_hi"] = [c["hi"] if c else None for c in cis]
        df["reward.at_chance (CI covers 0.5)"] = [c["at_chance"] if c else None for c in cis]
    if "reward.eval_p_value" in df:
        df["reward.above_chance (p<0.05)"] = df["reward.eval_p_value"] < 0.05
    elif "reward.eval_accuracy" in df:
        df["reward.above_chance"] = df["reward.eval_accuracy"] > 0.5
    if "ppo.probe_reward_after" in df:
        df["ppo.reward_rising (probe)"] = df["ppo.probe_reward_after"] > df["ppo.probe_reward_before"]
    elif "ppo.reward_second_half" in df:
        df["ppo.reward_rising"] = df["ppo.reward_second_half"] > df["ppo.reward_first_half"]
    return df
