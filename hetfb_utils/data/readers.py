"""Reading raw data, wherever it lives: the local mirror (``HETFB_DATA_DIR``, layout of
``docs/data.md``), a file given in params, the Hub, or a canonical URL. Bad rows are skipped and
counted by reason (`Drops`); files that cannot be read at all are one `DataError` naming the file,
what was expected and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..common.errors import DataError
from ..common.locations import data_dir, mirror_file

__all__ = [
    "DataError",
    "Drops",
    "check_columns",
    "data_dir",
    "file_digest",
    "fingerprint_files",
    "mirror_file",
    "read_table",
    "read_text_lines",
    "iter_jsonl",
    "jsonl_rows",
    "hub_rows",
    "stable_id",
]

WINOBIAS_URL = "https://raw.githubusercontent.com/uclanlp/corefBias/master/WinoBias/wino/data/{name}"
WINOGENDER_URL = "https://raw.githubusercontent.com/rudinger/winogender-schemas/master/data/{name}"
CROWS_URL = "https://raw.githubusercontent.com/nyu-mll/crows-pairs/master/data/crows_pairs_anonymized.csv"
IFEVAL_URL = (
    "https://raw.githubusercontent.com/google-research/google-research/master/"
    "instruction_following_eval/data/input_data.jsonl"
)


# --------------------------------------------------------------------------- bookkeeping
@dataclass
class Drops:
    """Rows skipped, counted by (source, reason); a few examples kept for the report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, source: str, reason: str, example: Any = None, n: int = 1) -> None:
        """Count one skipped row (or `n`) of `source` for `reason`, keeping the first example."""
        self.counts[(source, reason)] += n
        if example is not None and (source, reason) not in self.examples:
            self.examples[(source, reason)] = str(example)[:160]

    def frame(self) -> pd.DataFrame:
        """The counts as a table: source, reason, rows, an example."""
        rows = [
            {"source": s, "reason": r, "rows": n, "example": self.examples.get((s, r), "")}
            for (s, r), n in sorted(self.counts.items())
        ]
        return pd.DataFrame(rows, columns=["source", "reason", "rows", "example"])


def stable_id(*parts: Any) -> str:
    """A 16-hex id from the parts' text: the same row gets the same id in every run."""
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def preference_row(
    prompt: str,
    chosen: str,
    rejected: str,
    *,
    source: str,
    supervision: str,
    prompt_id: str,
    group_id: str | None = None,
    context: str = "[]",
    quality: float | None = None,
    label: str | None = None,
    n_responses: int = 2,
    **extra: Any,
) -> dict:
    """One unified preference row (the columns of `union.UNIFIED_COLUMNS`), then a source's own columns.

    `group_id` names the rows that must stay together wherever rows are drawn or split (`max_rows`, the
    selection's random order, a stage's held-out slice): WinoBias twins, WinoGrande twins, an OASST tree.
    Default: the row alone (its `prompt_id`)."""
    return dict(
        prompt=prompt,
        context=context,
        chosen=chosen,
        rejected=rejected,
        source=source,
        supervision=supervision,
        quality=quality,
        label=label,
        n_responses=n_responses,
        prompt_id=prompt_id,
        group_id=group_id or prompt_id,
        **extra,
    )


def is_number(x: Any) -> bool:
    """Is `x` a finite int or float (not a bool)?"""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- locations
def read_text_lines(path_or_url: str | Path) -> list[str]:
    """The lines of a local file or a URL (a byte-order mark dropped); one DataError for an unreadable or non-UTF-8
    file, or a failed download."""
    s = str(path_or_url)
    if s.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(s, timeout=30) as r:  # noqa: S310 - canonical dataset URL
                return r.read().decode("utf-8-sig").splitlines()
        except OSError as e:
            raise DataError(
                f"could not download {s}: {e}. Offline? Set HETFB_DATA_DIR to a local "
                "mirror in the layout of docs/data.md."
            ) from None
    try:
        return Path(s).read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not data
    except OSError as e:
        raise DataError(f"cannot read {s}: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(not_utf8(s, e)) from None


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """`sha256:<16 hex>` of a local file's content (remembered per size and mtime in this process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = "sha256:" + h.hexdigest()[:16]
    return _DIGESTS[key]


def fingerprint_files(files: dict[str, str]) -> dict[str, str]:
    """name -> content hash of each local file; a Hub id or URL is recorded as itself (`remote`), a local
    file that does not exist as `missing` (its reader then says so)."""
    out = {}
    for name, where in files.items():
        if where.startswith(("hub:", "url:", "http://", "https://")):
            out[name] = f"remote {where}"
        elif Path(where).is_dir():  # a folder of parts: the content of every file in it
            h = hashlib.sha256()
            for f in sorted(x for x in Path(where).rglob("*") if x.is_file()):
                h.update(f"{f.relative_to(where)}\0{file_digest(f)}\n".encode())
            out[name] = "sha256:" + h.hexdigest()[:16]
        else:
            out[name] = file_digest(where) if Path(where).is_file() else f"missing {where}"
    return out


def not_utf8(path, err: UnicodeDecodeError) -> str:
    """The error message for a file that is not UTF-8, with the `iconv` command that converts it."""
    return (
        f"{path} is not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at offset {err.start}): "
        f"expected UTF-8 JSON lines or CSV. Convert it, e.g. `iconv -f latin1 -t utf-8 {Path(path).name} "
        f"> fixed{Path(path).suffix}`, and point the source's `path` at the converted file."
    )


def empty_file(path, expected: str) -> str:
    """The error message for an empty file."""
    return f"{path} is empty: expected {expected}. Fill it, or remove the source from data.sources of the params file."


def iter_jsonl(lines: Iterable[str], source: str, drops: Drops) -> Iterator[dict]:
    """The JSON objects of JSON lines; a malformed line is a counted skip."""
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
        if not is_utf8(row):
            drops.add(source, "invalid_unicode", f"line {i}: a lone UTF-16 surrogate escape (e.g. \\ud83d)")
            continue
        yield row


def is_utf8(value: Any) -> bool:
    """Can every string in a parsed JSON value be written as UTF-8? A lone UTF-16 surrogate escape (`"\\ud83d"`, half
    of an emoji some exporters cut) parses to a string that cannot."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_utf8(k) and is_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_utf8(v) for v in value)
    return True


def jsonl_rows(path: Path) -> list[dict]:
    """Rows of a local JSONL file; malformed lines are skipped and passed on as one
    `{"__malformed__": n}` marker that the format parsers count as drops."""
    drops = Drops()
    rows = list(iter_jsonl(read_text_lines(path), str(path), drops))
    if drops.counts:
        rows.append({"__malformed__": sum(drops.counts.values())})
    return rows


def hub_rows(dataset_id: str, config: str | None, split: str) -> list[dict]:
    """The rows of a Hub dataset split; offline or unknown: one DataError saying to set HETFB_DATA_DIR."""
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, config, split=split)
    except Exception as e:  # offline, unknown id, gated ...
        raise DataError(
            f"could not load Hub dataset '{dataset_id}' (config={config}, split={split}): "
            f"{type(e).__name__}: {str(e)[:200]}. Offline? Set HETFB_DATA_DIR to a local "
            "mirror in the layout of docs/data.md (export HETFB_DATA_DIR=../shared/data)."
        ) from None
    return [dict(r) for r in ds]


def json_rows(path: Path) -> list[dict]:
    """Rows of a local `.json` file: a JSON array of objects, or (as `.jsonl`) one object per line."""
    lines = read_text_lines(path)
    text = "\n".join(lines).strip()
    if not text.startswith("["):
        return jsonl_rows(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); expected a JSON "
            "array of objects, or one JSON object per line"
        ) from None
    rows = [r for r in data if isinstance(r, dict) and is_utf8(r)]
    if len(rows) < len(data):
        rows.append({"__malformed__": len(data) - len(rows)})
    return rows


def csv_rows(path: Path, sep: str) -> list[dict]:
    """Rows of a CSV / TSV file, every value as written: `None`, `NA` and numbers stay text (a column that is
    empty in a row is None); a row with more fields than the header is one DataError naming its line."""
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(empty_file(path, "a header row naming the columns, then one row per response")) from None
    except UnicodeDecodeError as e:
        raise DataError(not_utf8(path, e)) from None
    except pd.errors.ParserError as e:
        raise DataError(
            f"{path}: {str(e).strip().rstrip('.')} (the header has the column names, each row must have "
            f"as many fields: quote a field that contains {sep!r})"
        ) from None
    return [{k: (v if v != "" else None) for k, v in r.items()} for r in df.to_dict("records")]


def read_table(path: str, split: str | None = None) -> list[dict]:
    """Rows of a jsonl/json/csv/tsv/parquet file or a Hub dataset id (generic source types)."""
    p = Path(path).expanduser()
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".jsonl", ".json"):
            rows = jsonl_rows(p) if suffix == ".jsonl" else json_rows(p)
            if not rows:
                raise DataError(
                    empty_file(
                        p,
                        "one JSON object per line"
                        if suffix == ".jsonl"
                        else "a JSON array of objects (or one JSON object per line)",
                    )
                )
            return rows
        if suffix in (".csv", ".tsv"):
            return csv_rows(p, "\t" if suffix == ".tsv" else ",")
        if suffix == ".parquet":
            return pd.read_parquet(p).to_dict("records")
        raise DataError(f"{p}: unsupported file type '{suffix}' (use .jsonl, .json, .csv, .tsv, .parquet)")
    if p.is_dir():
        return directory_rows(p, split)
    if p.suffix or "/" not in path or path.startswith((".", "/", "~")):
        from ..common.params_files import REPO_ROOT

        looked = [str(p)] if p.is_absolute() else [str((b / p).resolve()) for b in (REPO_ROOT, Path.cwd())]
        raise DataError(
            f"data file '{path}' not found (a relative path is read against the params file's folder, the "
            f"repository root and the working directory; looked at {looked}), and it does not look like a Hub "
            "dataset id (`owner/name`)"
        )
    return hub_rows(path, None, split or "train")


def directory_rows(p: Path, split: str | None = None) -> list[dict]:
    """Rows of a folder as Spark, pandas or `datasets` write one: parquet parts (`part-*.parquet`, read as one
    table), or a `Dataset.save_to_disk` folder (`dataset_info.json` / `state.json`, one split's sub-folder of a
    `DatasetDict` chosen by `split`). Anything else is one DataError naming the folder and what it holds."""
    parts = sorted(p.rglob("*.parquet"))
    if parts:
        try:
            return pd.concat([pd.read_parquet(f) for f in parts], ignore_index=True).to_dict("records")
        except Exception as e:  # noqa: BLE001 - a broken or mismatched part: say which folder
            raise DataError(f"{p}: could not read its {len(parts)} parquet part(s) as one table: {e}") from None
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        from datasets import load_from_disk

        ds = load_from_disk(str(p))
        if hasattr(ds, "keys"):  # a DatasetDict: one split
            name = split or ("train" if "train" in ds else next(iter(ds)))
            if name not in ds:
                raise DataError(f"{p}: a saved DatasetDict without split '{name}'; it has {sorted(ds)}")
            ds = ds[name]
        return [dict(r) for r in ds]
    have = sorted(x.name for x in p.iterdir())[:10]
    raise DataError(
        f"{p} is a folder with no parquet parts and no saved `datasets` dataset in it (it holds {have or 'nothing'}):"
        " point the source's `path` at a .jsonl/.json/.csv/.tsv/.parquet file, a folder of parquet parts, or a"
        " `save_to_disk` folder"
    )


def check_columns(rows: list[dict], needed: dict[str, str], where: str) -> None:
    """Every column in `needed` (column -> the params key that names it) is in the rows: otherwise one
    DataError naming the missing column, the key to set, and the columns the file has."""
    have = list(dict.fromkeys(k for r in rows[:1000] for k in r if k != "__malformed__"))
    missing = [c for c in needed if c not in have]
    if missing and have:
        keys = ", ".join(f"`{needed[c]}`" for c in missing)
        raise DataError(
            f"{where}: column(s) {missing} not found; the file has columns {have}. Name the right "
            f"column(s) with {keys} in the source's entry of data.sources"
        )
