"""Where the kit's inputs live: the local data mirror (`data.data_dir` or `$HETFB_DATA_DIR`, in the layout
of docs/data.md) and the files in it."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError
from .params_files import REPO_ROOT


def data_dir(params=None) -> Path | None:
    """The local data mirror (`data.data_dir`, else `$HETFB_DATA_DIR`); None = load from the Hub / URLs."""
    d = (params.data.data_dir if params else None) or os.environ.get("HETFB_DATA_DIR")
    if not d:
        return None
    p = Path(d).expanduser()
    if not p.is_absolute():
        p = (REPO_ROOT / p) if (REPO_ROOT / p).exists() else p.resolve()
    if not p.is_dir():
        raise DataError(
            f"data mirror directory '{d}' (from data.data_dir or HETFB_DATA_DIR) does "
            "not exist. Point HETFB_DATA_DIR at a mirror in the layout of docs/data.md "
            "(e.g. export HETFB_DATA_DIR=../shared/data), or unset it to load from the "
            "Hugging Face Hub (needs network)."
        )
    return p


def mirror_file(root: Path, rel: str) -> Path:
    """A file of the data mirror, or one DataError naming it, the mirror, and what the mirror holds."""
    p = root / rel
    if not p.is_file():
        present = sorted(str(x.relative_to(root)) for x in root.rglob("*") if x.is_file())[:20]
        raise DataError(
            f"'{rel}' not found in the data mirror {root}. The mirror must have the "
            f"layout docs/data.md describes. Present: "
            f"{present or 'nothing'}. Fix HETFB_DATA_DIR / data.data_dir, or unset it "
            "to load from the Hub (needs network)."
        )
    return p
