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

ROOT = Path(__file__).resolve().parent
# the schema (params.py) is not in any group: the parameter values themselves key every stage
_DATA = ("readers.py", "converters.py", "winobias_data.py", "data.py")
GROUPS = {
    "data": _DATA,                                                       # stage 1
    "selection": _DATA + ("selection.py",),                              # stage 2
    "training": ("sft.py", "rl.py", "models.py", "distributed.py"),      # what a trained adapter depends on
    "evaluation": _DATA + ("models.py", "scoring.py", "evaluation.py", "benchmarks", "metrics"),
    "report": ("report.py", "tables.py", "stats.py", "uncertainty.py", "compare.py", "progress.py"),
}


def _files(group: str | None) -> list[Path]:
    if group is None:
        return sorted(ROOT.rglob("*.py"))
    out = []
    for name in GROUPS[group]:
        p = ROOT / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


@functools.lru_cache(maxsize=None)
def code_version(group: str | None = None) -> str:
    h = hashlib.sha256()
    for f in _files(group):
        if f.is_file():
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def stage_code_version(*groups: str) -> str:
    """One version for the code several groups make up (a notebook's stage)."""
    return hashlib.sha256("|".join(code_version(g) for g in groups).encode()).hexdigest()[:12]
