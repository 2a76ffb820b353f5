"""Stage 1: load every source, convert it to one binary-preference format, take the union.

Unified row::

    prompt, context, chosen, rejected, source, supervision, quality, prompt_id, label, n_responses

``context`` is a JSON list of the conversation turns before ``prompt`` (OASST threads); ``quality``
is max - min of the chosen numeric label over the prompt's responses (null for sources without a
score). Conversions follow the paper (App. A.2): numerical -> ordinal (sort by the label) ->
binary (best vs worst response of the prompt).

Each raw format has one parser that takes an iterable of raw rows (dicts) or lines, whatever the
location: the local mirror (``HETFB_DATA_DIR``, layout of ``docs/data.md``) or the Hub / canonical
URLs. Bad rows are skipped and counted by reason (``Drops``), never silently lost.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..common.params import Params, SourceSpec
from .converters import (
    chat_turns,
    load_oasst_rows,
    load_winogrande_rows,
    parse_numeric,
    parse_oasst,
    parse_pairwise,
    parse_winogrande,
)
from .readers import DataError, Drops, check_columns, data_dir, fingerprint_files, read_table
from .winobias_data import load_winobias_pairs, winobias_files, winobias_hf_pairs, winobias_to_rows

UNIFIED_COLUMNS = [
    "prompt_id",
    "group_id",
    "source",
    "supervision",
    "prompt",
    "context",
    "chosen",
    "rejected",
    "quality",
    "label",
    "n_responses",
]


# --------------------------------------------------------------------------- the union
@dataclass
class UnionResult:
    """Stage 1's result: the union, the OASST held-out pairs, the drops by reason, the tree split, the inputs'
    fingerprint."""

    union: pd.DataFrame
    heldout: pd.DataFrame
    drops: pd.DataFrame
    splits: list[dict]
    fingerprint: str

    SPLIT_KEYS = ("source", "seed", "heldout_fraction", "train_trees", "heldout_trees", "heldout_pairs")

    def __post_init__(self):
        # one key order however the record was obtained (built now, or read back from JSON with
        # sorted keys), so the split table has the same columns in every run
        self.splits = [
            {**{k: s[k] for k in self.SPLIT_KEYS if k in s}, **{k: s[k] for k in sorted(s) if k not in self.SPLIT_KEYS}}
            for s in self.splits
        ]


def _dedupe(rows: list[dict], source: str, drops: Drops) -> list[dict]:
    """A pair given twice (same context, prompt, chosen and rejected) is kept once; a prompt with several
    distinct pairs is not a duplicate. Keeping one pair per prompt would keep rows by file order, and in
    WinoBias file order carries a label: each type-1 opening is written twice, once per referent, with
    continuations whose pronouns have opposite genders (the first is female more often), so "first pair
    per prompt" made 129 of the quickstart's 200 WinoBias `chosen` replies female."""
    out, seen = [], set()
    for r in rows:
        key = (r["context"], r["prompt"], r["chosen"], r["rejected"])
        if key in seen:
            drops.add(source, "duplicate_pair", r["prompt"][:80])
            continue
        seen.add(key)
        out.append(r)
    return out


def draw_groups(rows: list[dict], max_rows: int, seed: str) -> list[dict]:
    """At most `max_rows` rows, drawn by whole groups (`group_id`: WinoBias and WinoGrande twins, OASST trees)
    in a seeded order, so a draw keeps what the source balances inside a group (he / she, option 1 / 2); only
    the last group drawn can be cut. The rows keep their input order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("group_id") or r["prompt_id"], []).append(i)
    order = list(groups)
    random.Random(seed).shuffle(order)
    keep: list[int] = []
    for g in order:
        keep += groups[g][: max_rows - len(keep)]
        if len(keep) >= max_rows:
            break
    return [rows[i] for i in sorted(keep)]


def convert_source(spec: SourceSpec, params: Params, drops: Drops) -> tuple[list[dict], list[dict], dict | None]:
    """One source of the params to unified rows: (training rows, held-out rows, split record); duplicates of whole
    pairs dropped, `max_rows` drawn by whole groups."""
    root = data_dir(params)
    held: list[dict] = []
    record = None
    if spec.type == "winogrande":
        rows = parse_winogrande(load_winogrande_rows(spec.split or "train_xs", root), spec.name, drops)
    elif spec.type == "oasst":
        raw = load_oasst_rows(spec.split or "validation", root)
        rows, held, record = parse_oasst(raw, spec, params.data.language, params.data_seed, drops)
    elif spec.type == "winobias":
        split = spec.split or "dev"
        pairs = (
            load_winobias_pairs(split, root, spec.name, drops)
            if root is not None or spec.path is None
            else winobias_hf_pairs(split, spec.name, drops)
        )
        rows = winobias_to_rows(pairs, spec.name, drops)
    elif spec.type == "numeric":
        raw = read_table(spec.path, spec.split)
        check_columns(
            raw,
            {spec.prompt_column: "prompt_column", spec.response_column: "response_column", spec.label: "label"},
            f"source '{spec.name}' ({spec.path})",
        )
        rows = parse_numeric(raw, spec, drops)
    else:
        raw = read_table(spec.path, spec.split)
        needed = {spec.chosen_column: "chosen_column", spec.rejected_column: "rejected_column"}
        if not any(chat_turns(r.get(spec.chosen_column)) for r in raw[:50]):  # chat format carries the prompt
            needed[spec.prompt_column] = "prompt_column"
        check_columns(raw, needed, f"source '{spec.name}' ({spec.path})")
        rows = parse_pairwise(raw, spec, drops)
    rows = _dedupe(rows, spec.name, drops)
    if spec.max_rows is not None and len(rows) > spec.max_rows:
        kept = draw_groups(rows, spec.max_rows, f"{params.data_seed}:{spec.name}")
        drops.add(spec.name, "over_max_rows", n=len(rows) - len(kept))
        rows = kept
    return rows, held, record


def source_files(params: Params) -> dict[str, str]:
    """Every file stage 1 reads, by source: a local path (mirror or `path`), or the Hub id / URL it loads."""
    root = data_dir(params)
    out: dict[str, str] = {}
    for spec in params.data.sources:
        if spec.type == "winogrande":
            split = spec.split or "train_xs"
            out[spec.name] = str(root / f"winogrande/{split}.jsonl") if root else f"hub:allenai/winogrande:{split}"
        elif spec.type == "oasst":
            split = spec.split or "validation"
            name = {"validation": "oasst1/validation_en.jsonl", "train": "oasst1/train_en.jsonl"}.get(split, split)
            out[spec.name] = str(root / name) if root else f"hub:OpenAssistant/oasst1:{split}"
        elif spec.type == "winobias":
            for f in winobias_files(spec.split or "dev"):
                out[f"{spec.name}:{f.rsplit('/', 1)[1]}"] = str(root / f) if root is not None else f"url:{f}"
        else:
            p = Path(spec.path).expanduser()
            out[spec.name] = str(p.resolve()) if p.exists() else f"hub:{spec.path}:{spec.split or 'train'}"
    return out


def input_files(params: Params) -> dict[str, str]:
    """`source_files` with each local file's content hash (`sha256:<16 hex>`): a changed file changes the
    union's cache key and re-runs stage 1 (the runner says `data changed`)."""
    return fingerprint_files(source_files(params))


def _input_fingerprint(params: Params) -> str:
    """Hash of what the union depends on: the data section (seed resolved), every input file's content,
    the stage-1 code."""
    from ..common.version import code_version

    blob = json.dumps([params.resolved_dump()["data"], input_files(params), code_version("data")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_union(params: Params, use_cache: bool = True, progress: bool = True) -> UnionResult:
    """Convert every source of `params.data.sources` and take the union (cached by its inputs)."""
    from ..common.report import atomic_write_json, atomic_write_parquet

    fp = _input_fingerprint(params)
    cdir = params.cache_path / "union" / fp
    if use_cache and (cdir / "done.json").is_file():
        splits = json.loads((cdir / "done.json").read_text())["splits"]
        return UnionResult(
            pd.read_parquet(cdir / "union.parquet"),
            pd.read_parquet(cdir / "heldout.parquet"),
            pd.read_parquet(cdir / "drops.parquet"),
            splits,
            fp,
        )
    from tqdm.auto import tqdm

    drops, parts, held, splits = Drops(), [], [], []
    for spec in tqdm(params.data.sources, desc="converting sources", disable=not progress):
        rows, h, record = convert_source(spec, params, drops)
        if not rows:
            raise DataError(
                f"source '{spec.name}' ({spec.type}) produced no rows; drops: "
                f"{ {r: n for (s, r), n in drops.counts.items() if s == spec.name} }"
            )
        parts.extend(rows)
        held.extend(h)
        if record:
            splits.append(record)
    union = _frame(parts)
    heldout = _frame(held)
    result = UnionResult(union, heldout, drops.frame(), splits, fp)
    if use_cache:
        atomic_write_parquet(union, cdir / "union.parquet")
        atomic_write_parquet(heldout, cdir / "heldout.parquet")
        atomic_write_parquet(result.drops, cdir / "drops.parquet")
        atomic_write_json({"splits": splits, "fingerprint": fp}, cdir / "done.json")
    return result


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=UNIFIED_COLUMNS)
    extra = [c for c in df.columns if c not in UNIFIED_COLUMNS]
    df = df[UNIFIED_COLUMNS + extra]
    df["quality"] = df["quality"].astype("float64")
    return df.reset_index(drop=True)


def composition(union: pd.DataFrame) -> pd.DataFrame:
    """Rows per source and supervision type, with share of the union and quality stats."""
    g = union.groupby(["source", "supervision"], sort=False)
    df = g.agg(
        rows=("prompt_id", "size"),
        scored=("quality", "count"),
        quality_mean=("quality", "mean"),
        quality_max=("quality", "max"),
    ).reset_index()
    df["share"] = df["rows"] / df["rows"].sum()
    return df


def save_union(result: UnionResult, params: Params) -> Path:
    """Stage-1 outputs under <run>/data: union, OASST held-out pairs, drops, tree split."""
    from ..common.report import atomic_write_json, atomic_write_parquet, provenance

    d = params.run_dir / "data"
    atomic_write_parquet(result.union, d / "union.parquet")
    atomic_write_parquet(result.heldout, d / "oasst_heldout.parquet")
    atomic_write_parquet(result.drops, d / "drops.parquet")
    return atomic_write_json(
        {
            "fingerprint": result.fingerprint,
            "splits": result.splits,
            "rows": len(result.union),
            "heldout_rows": len(result.heldout),
            "provenance": provenance(params),
        },
        d / "union_report.json",
    )


def load_union(params: Params) -> UnionResult:
    """Stage 1's outputs of the run read back (one clear error when notebook 01 has not run)."""
    d = params.run_dir / "data"
    if not (d / "union_report.json").is_file():
        raise DataError(
            f"stage 1 outputs not found in {d}: run notebook 01 (or "
            "`python -m hetfb_utils run <params> --only data`) first"
        )
    rep = json.loads((d / "union_report.json").read_text())
    return UnionResult(
        pd.read_parquet(d / "union.parquet"),
        pd.read_parquet(d / "oasst_heldout.parquet"),
        pd.read_parquet(d / "drops.parquet"),
        rep["splits"],
        rep["fingerprint"],
    )
