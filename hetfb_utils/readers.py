"""Reading raw data, wherever it lives: the local mirror (``HETFB_DATA_DIR``, layout of
``shared/data``), a file given in params, the Hub, or a canonical URL. Bad rows are skipped and
counted by reason (`Drops`); files that cannot be read at all are one `DataError` naming the file,
what was expected and the fix.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from .params import Params

WINOBIAS_URL = "https://raw.githubusercontent.com/uclanlp/corefBias/master/WinoBias/wino/data/{name}"
WINOGENDER_URL = "https://raw.githubusercontent.com/rudinger/winogender-schemas/master/data/{name}"
CROWS_URL = "https://raw.githubusercontent.com/nyu-mll/crows-pairs/master/data/crows_pairs_anonymized.csv"
IFEVAL_URL = ("https://raw.githubusercontent.com/google-research/google-research/master/"
              "instruction_following_eval/data/input_data.jsonl")


class DataError(RuntimeError):
    """Data that cannot be found or read; the message says what, where, and how to fix it."""


# --------------------------------------------------------------------------- bookkeeping
@dataclass
class Drops:
    """Rows skipped, counted by (source, reason); a few examples kept for the report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, source: str, reason: str, example: Any = None, n: int = 1) -> None:
        self.counts[(source, reason)] += n
        if example is not None and (source, reason) not in self.examples:
            self.examples[(source, reason)] = str(example)[:160]

    def frame(self) -> pd.DataFrame:
        rows = [{"source": s, "reason": r, "rows": n, "example": self.examples.get((s, r), "")}
                for (s, r), n in sorted(self.counts.items())]
        return pd.DataFrame(rows, columns=["source", "reason", "rows", "example"])


def stable_id(*parts: Any) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- locations
def data_dir(params: Params | None = None) -> Path | None:
    d = (params.data.data_dir if params else None) or os.environ.get("HETFB_DATA_DIR")
    if not d:
        return None
    p = Path(d).expanduser()
    if not p.is_absolute():
        from .params import REPO_ROOT
        p = (REPO_ROOT / p) if (REPO_ROOT / p).exists() else p.resolve()
    if not p.is_dir():
        raise DataError(f"data mirror directory '{d}' (from data.data_dir or HETFB_DATA_DIR) does "
                        "not exist. Point HETFB_DATA_DIR at a mirror in the layout of shared/data "
                        "(e.g. export HETFB_DATA_DIR=../shared/data), or unset it to load from the "
                        "Hugging Face Hub (needs network).")
    return p


def mirror_file(root: Path, rel: str) -> Path:
    p = root / rel
    if not p.is_file():
        present = sorted(str(x.relative_to(root)) for x in root.rglob("*") if x.is_file())[:20]
        raise DataError(f"'{rel}' not found in the data mirror {root}. The mirror must have the "
                        f"layout of shared/data (see shared/data/SOURCES.md). Present: "
                        f"{present or 'nothing'}. Fix HETFB_DATA_DIR / data.data_dir, or unset it "
                        "to load from the Hub (needs network).")
    return p


def read_text_lines(path_or_url: str | Path) -> list[str]:
    s = str(path_or_url)
    if s.startswith(("http://", "https://")):
        import urllib.request
        try:
            with urllib.request.urlopen(s, timeout=30) as r:  # noqa: S310 - canonical dataset URL
                return r.read().decode("utf-8").splitlines()
        except OSError as e:
            raise DataError(f"could not download {s}: {e}. Offline? Set HETFB_DATA_DIR to a local "
                            "mirror in the layout of shared/data.") from None
    try:
        return Path(s).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read {s}: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(not_utf8(s, e)) from None


def not_utf8(path, err: UnicodeDecodeError) -> str:
    return (f"{path} is not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset {err.start}): "
            f"expected UTF-8 JSON lines or CSV. Convert it, e.g. `iconv -f latin1 -t utf-8 {Path(path).name} "
            f"> fixed{Path(path).suffix}`, and point the source's `path` at the converted file.")


def empty_file(path, expected: str) -> str:
    return (f"{path} is empty: expected {expected}. Fill it, or remove the source from data.sources "
            f"of the params file.")


def iter_jsonl(lines: Iterable[str], source: str, drops: Drops) -> Iterator[dict]:
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            drops.add(source, "malformed_json", f"line {i}: {e}")
            continue
        if not isinstance(row, dict):
            drops.add(source, "malformed_json", f"line {i}: not an object")
            continue
        yield row


def jsonl_rows(path: Path) -> list[dict]:
    """Rows of a local JSONL file; malformed lines are skipped and passed on as one
    `{"__malformed__": n}` marker that the format parsers count as drops."""
    drops = Drops()
    rows = list(iter_jsonl(read_text_lines(path), str(path), drops))
    if drops.counts:
        rows.append({"__malformed__": sum(drops.counts.values())})
    return rows


def hub_rows(dataset_id: str, config: str | None, split: str) -> list[dict]:
    from datasets import load_dataset
    try:
        ds = load_dataset(dataset_id, config, split=split)
    except Exception as e:  # offline, unknown id, gated ...
        raise DataError(f"could not load Hub dataset '{dataset_id}' (config={config}, split={split}): "
                        f"{type(e).__name__}: {str(e)[:200]}. Offline? Set HETFB_DATA_DIR to a local "
                        "mirror in the layout of shared/data (export HETFB_DATA_DIR=../shared/data).") from None
    return [dict(r) for r in ds]


def read_table(path: str, split: str | None = None) -> list[dict]:
    """Rows of a jsonl/json/csv/tsv/parquet file or a Hub dataset id (generic source types)."""
    p = Path(path).expanduser()
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".jsonl", ".json"):
            rows = jsonl_rows(p)
            if not rows:
                raise DataError(empty_file(p, "one JSON object per line"))
            return rows
        if suffix in (".csv", ".tsv"):
            try:
                return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",").to_dict("records")
            except pd.errors.EmptyDataError:
                raise DataError(empty_file(p, "a header row naming the columns, then one row per "
                                              "response")) from None
            except UnicodeDecodeError as e:
                raise DataError(not_utf8(p, e)) from None
        if suffix == ".parquet":
            return pd.read_parquet(p).to_dict("records")
        raise DataError(f"{p}: unsupported file type '{suffix}' (use .jsonl, .json, .csv, .tsv, .parquet)")
    if p.suffix or "/" not in path or path.startswith((".", "/", "~")):
        raise DataError(f"data file '{path}' not found (and it does not look like a Hub dataset id)")
    return hub_rows(path, None, split or "train")
