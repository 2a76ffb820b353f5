"""The code version: a hash of the package's own source (every module, the `evaluate` metric
scripts). Stage markers and the evaluation cache are keyed by it, so a fix to a metric or a stage is
never hidden behind results the old code produced."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]
