"""Code versions: hashes of the package's own source. Stage markers, the evaluation cache and the
stage cache shared by runs are keyed by the version of the code that produces them, so a fix to a
metric or a stage is never hidden behind results the old code produced, and a change to (say) the
report code does not retrain or re-evaluate anything.

`code_version()` hashes every module; `code_version(group)` only the files of one group (a file
name, or a folder whose every `.py` counts).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the package: hetfb_utils/
# the schema (common/params.py) is not in any group: the parameter values themselves key every stage
_BASE = ("common/locations.py", "common/params_files.py")
_DATA = _BASE + tuple(f"data/{m}.py" for m in ("readers", "converters", "winobias_data", "union", "eval_sets"))
_MODEL = ("models/loading.py", "models/tiny.py", "common/distributed.py")
# figures, summaries and diagnostics are in no group but "report": redrawing a figure re-runs no stage
GROUPS = {
    "data": _DATA,  # stage 1
    "selection": _DATA + ("selection/embeddings.py", "selection/subsets.py"),  # stage 2
    "training": (
        "training/stages.py",
        "training/sft.py",
        "training/reward.py",
        "training/rl.py",
        "common/configs.py",
        "models/scoring.py",
    )
    + _MODEL,  # what an adapter depends on
    "evaluation": _DATA
    + _MODEL
    + ("models/scoring.py", "evaluation/evaluate.py", "evaluation/benchmarks", "evaluation/metrics"),
    "report": (
        "common/report.py",
        "common/stats.py",
        "common/progress.py",
        "data/figures.py",
        "selection/figures.py",
        "training/summary.py",
        "evaluation/tables.py",
        "evaluation/figures.py",
        "analysis",
    ),
}


def _files(group: str | None) -> list[Path]:
    if group is None:
        return sorted(ROOT.rglob("*.py"))
    out = []
    for name in GROUPS[group]:
        p = ROOT / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


@functools.cache
def code_version(group: str | None = None) -> str:
    """A 12-hex hash of the package's code (all modules, or the files of one group of `GROUPS`)."""
    h = hashlib.sha256()
    for f in _files(group):
        if f.is_file():
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def stage_code_version(*groups: str) -> str:
    """One version for the code several groups make up (a notebook's stage)."""
    return hashlib.sha256("|".join(code_version(g) for g in groups).encode()).hexdigest()[:12]
