"""Notebooks 01-02 shared by runs, and what an interrupted run leaves behind.

The union and the selection depend on the data section, the selection section and the code, not on the
run's name or its training seed: a finished one is kept in `<cache_dir>/run-stages/<stage>-<key>/` (the
runner's key of the notebook: params sections, notebook, code, data file hashes) with the tables, figures
and executed notebook it wrote, and another run with the same key copies them instead of running the
notebook. A seed group (`make seeds`) so builds its data once.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..common.params import Params

# per stage: the files it writes, relative to the run directory (globs)
OUTPUTS = {
    "data": [
        "data/union.parquet",
        "data/drops.parquet",
        "data/oasst_heldout.parquet",
        "data/union_report.json",
        "tables/01_*",
        "figures/01_*",
    ],
    "selection": [
        "data/variants/*.parquet",
        "data/selection.parquet",
        "data/selection_report.json",
        "tables/02_*",
        "figures/02_*",
    ],
}
_TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$|^.+\.\d+\.tmp$|^.+\.tmp$")
STALE_S = 3600  # temporaries in the shared cache older than this are left over (another run may be writing)


def _store(params: Params, stage, key: str) -> Path:
    return params.cache_path / "run-stages" / f"{stage.name}-{key}"


def store_outputs(params: Params, stage, key: str, notebook: Path) -> None:
    """Keep a finished stage's outputs for other runs (whole or not at all)."""
    dst = _store(params, stage, key)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for pattern in OUTPUTS[stage.name]:
        for f in sorted(params.run_dir.glob(pattern)):
            if f.is_file() and not _TEMP.match(f.name):
                (tmp / f.relative_to(params.run_dir)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, tmp / f.relative_to(params.run_dir))
    (tmp / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy2(notebook, tmp / "notebooks" / notebook.name)
    (tmp / "origin.json").write_text(
        json.dumps(
            {
                "run": params.run_name,
                "run_dir": str(params.run_dir),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
        )
    )
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def reuse_outputs(params: Params, stage, key: str, notebook: Path) -> dict | None:
    """Copy a stored stage with this key into the run; its origin ({run, run_dir, created}), or None."""
    src = _store(params, stage, key)
    if not (src / "origin.json").is_file():
        return None
    origin = json.loads((src / "origin.json").read_text())
    if origin.get("run_dir") == str(params.run_dir):
        return None  # this run's own outputs: the marker decides, not the store
    from ..common.report import atomic_path

    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if not f.is_file() or rel.parts[0] == "notebooks" or rel.name == "origin.json":
            continue
        with atomic_path(params.run_dir / rel) as tmp:
            shutil.copyfile(f, tmp)
    with atomic_path(notebook) as tmp:
        shutil.copyfile(src / "notebooks" / notebook.name, tmp)
    return origin


def sweep_temporaries(params: Params) -> int:
    """Remove the temporary files and directories an interrupted run left (atomic writes that never got
    renamed): all of them inside the run directory, and those older than an hour in the shared cache.
    Returns how many were removed."""
    n = 0
    now = time.time()
    for root, stale_only in ((params.run_dir, False), (params.cache_path, True)):
        if not root.is_dir():
            continue
        for p in list(root.rglob(".*")) + list(root.rglob("*.tmp")):
            if not _TEMP.match(p.name) or not p.exists():
                continue
            if stale_only and now - p.stat().st_mtime < STALE_S:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n
