"""Reports: atomic writes, tables (CSV + Markdown), figures (PNG), provenance stamps."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .params import REPO_ROOT, Params


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
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
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600: give it the mode open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text so that the file appears complete or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON (sorted keys, indented) atomically."""
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def atomic_write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a frame as parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def git_commit() -> str:
    """The repository's short commit, with `+dirty` when tracked files differ from it (`unknown` without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(params: Params, **extra: Any) -> dict:
    """What produced an output: run, data, model, the three seeds, params hash, code version."""
    from .locations import data_dir

    try:
        ddir = str(data_dir(params) or "hub")
    except Exception:  # noqa: BLE001 - provenance must never fail
        ddir = "unknown"
    return {
        "run": params.run_name,
        "seed": params.seed,
        "seeds": params.seeds,
        "model": params.model.name_or_path,
        "data": ddir,
        "params_hash": params.digest(),
        "git": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def stamp_line(params: Params, **extra: Any) -> str:
    """The provenance line under every table: run, model, data, the three seeds, params hash, git commit."""
    p = provenance(params, **extra)
    seeds = p["seeds"]
    return (
        "_run `{run}` · model `{model}` · data `{data}` · seeds: data {d}, training {t}, evaluation {e} · "
        "params {params_hash} · git {git}_".format(**p, d=seeds["data"], t=seeds["training"], e=seeds["evaluation"])
    )


def save_table(
    df: pd.DataFrame,
    name: str,
    params: Params,
    *,
    floatfmt: str = ".4f",
    caption: str | None = None,
    footnote: str | None = None,
    markdown: pd.DataFrame | None = None,
    **extra: Any,
) -> Path:
    """Write tables/<name>.csv and tables/<name>.md (`markdown` when given, e.g. cells with their
    intervals; with a footnote and a provenance line)."""
    tdir = params.run_dir / "tables"
    with atomic_path(tdir / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    md = []
    if caption:
        md.append(f"**{caption}**\n")
    shown = df if markdown is None else markdown
    flat = shown.apply(
        lambda c: (
            c.str.replace("\n", "<br>", regex=False)
            if c.dtype == object and c.map(lambda x: isinstance(x, str)).all()
            else c
        )
    )  # one table row per row
    md.append(flat.to_markdown(index=False, floatfmt=floatfmt) if not shown.empty else "_(empty)_")
    if footnote:
        md.append("\n" + footnote)
    md.append("\n" + stamp_line(params, **extra) + "\n")
    atomic_write_text("\n".join(md), tdir / f"{name}.md")
    return tdir / f"{name}.csv"


def save_figure(fig, name: str, params: Params) -> Path:
    """Write a figure as figures/<name>.png of the run and close it."""
    path = params.run_dir / "figures" / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def package_versions() -> dict:
    """The versions of the packages a run depends on (torch, transformers, trl, peft, ...)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "torch",
        "transformers",
        "trl",
        "peft",
        "datasets",
        "accelerate",
        "sentence-transformers",
        "scikit-learn",
        "papermill",
        "pandas",
        "numpy",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- figures
def pyplot():
    """matplotlib's pyplot on the headless Agg backend, and seaborn with the kit's style."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns
