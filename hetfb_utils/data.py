"""Stage 1: load every source, convert it to one binary-preference format, take the union.

Unified row (DESIGN.md data contract)::

    prompt, context, chosen, rejected, source, supervision, quality, prompt_id, label, n_responses

``context`` is a JSON list of the conversation turns before ``prompt`` (OASST threads); ``quality``
is max - min of the chosen numeric label over the prompt's responses (null for sources without a
score). Conversions follow the paper (App. A.2): numerical -> ordinal (sort by the label) ->
binary (best vs worst response of the prompt).

Each raw format has one parser that takes an iterable of raw rows (dicts) or lines, whatever the
location: the local mirror (``HETFB_DATA_DIR``, layout of ``shared/data``) or the Hub / canonical
URLs. Bad rows are skipped and counted by reason (``Drops``), never silently lost.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from .params import Params, SourceSpec

UNIFIED_COLUMNS = ["prompt_id", "source", "supervision", "prompt", "context", "chosen", "rejected",
                   "quality", "label", "n_responses"]
CONVERTER_VERSION = "1"  # bump when a conversion changes: invalidates the cache

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
            return jsonl_rows(p)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",").to_dict("records")
        if suffix == ".parquet":
            return pd.read_parquet(p).to_dict("records")
        raise DataError(f"{p}: unsupported file type '{suffix}' (use .jsonl, .json, .csv, .tsv, .parquet)")
    if p.suffix or "/" not in path or path.startswith((".", "/", "~")):
        raise DataError(f"data file '{path}' not found (and it does not look like a Hub dataset id)")
    return hub_rows(path, None, split or "train")


# --------------------------------------------------------------------------- WinoGrande
WINOGRANDE_SPLITS = ["train_xs", "train_s", "train_m", "train_l", "train_xl", "validation"]


def load_winogrande_rows(split: str, root: Path | None) -> list[dict]:
    if split not in WINOGRANDE_SPLITS:
        raise DataError(f"winogrande split '{split}' unknown; use one of {WINOGRANDE_SPLITS}")
    if root is not None:
        return jsonl_rows(mirror_file(root, f"winogrande/{split}.jsonl"))
    if split == "validation":
        return hub_rows("allenai/winogrande", "winogrande_debiased", "validation")
    return hub_rows("allenai/winogrande", "winogrande_" + split.split("_")[1], "train")


def parse_winogrande(rows: Iterable[dict], source: str, drops: Drops) -> list[dict]:
    """(sentence with `_`, correct option, other option)."""
    out = []
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [k for k in ("sentence", "option1", "option2", "answer") if k not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing} in {r}")
            continue
        sent, o1, o2, ans = (str(r["sentence"] or "").strip(), str(r["option1"] or "").strip(),
                             str(r["option2"] or "").strip(), str(r["answer"]).strip())
        if not sent or not o1 or not o2:
            drops.add(source, "empty_text", r)
            continue
        if ans not in ("1", "2"):
            drops.add(source, "bad_answer", r)
            continue
        if "_" not in sent:
            drops.add(source, "no_blank", r)
            continue
        chosen, rejected = (o1, o2) if ans == "1" else (o2, o1)
        out.append(dict(prompt=sent, context="[]", chosen=chosen, rejected=rejected, source=source,
                        supervision="binary", quality=None, label=None, n_responses=2,
                        prompt_id=stable_id(source, sent, o1, o2), option1=o1, option2=o2,
                        answer=int(ans)))
    return out


# --------------------------------------------------------------------------- OASST1
def load_oasst_rows(split: str, root: Path | None) -> list[dict]:
    if root is not None:
        name = {"validation": "oasst1/validation_en.jsonl", "train": "oasst1/train_en.jsonl"}.get(split)
        if name is None or (split == "train" and not (root / name).is_file()):
            raise DataError(f"the mirror {root} has no OASST1 '{split}' split (the shared mirror holds "
                            "validation only). Use split: validation with heldout_fraction > 0 to split "
                            "it by tree, or load from the Hub (unset HETFB_DATA_DIR; needs network).")
        return jsonl_rows(mirror_file(root, name))
    return hub_rows("OpenAssistant/oasst1", None, split)


def get_label(msg: dict, label: str) -> float | None:
    """Value of a numeric field: `rank`, `detoxify.toxicity`, `labels.<name>` or a top-level key."""
    if label.startswith("labels."):
        labels = msg.get("labels") or {}
        names, values = labels.get("name") or [], labels.get("value") or []
        name = label.split(".", 1)[1]
        for n, v in zip(names, values):
            if n == name:
                return float(v) if _is_number(v) else None
        return None
    node: Any = msg
    for part in label.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if _is_number(node) else None


def ordinal_to_pair(responses: list[tuple[str, float]], prefer: str) -> tuple[str, str, float] | None:
    """Numerical -> ordinal -> binary (paper App. A.2): best vs worst response, plus the spread.

    Returns None when every response has the same score (no preference)."""
    ranked = sorted(responses, key=lambda t: t[1], reverse=(prefer == "higher"))
    best, worst = ranked[0], ranked[-1]
    spread = max(s for _, s in responses) - min(s for _, s in responses)
    if spread == 0:
        return None
    return best[0], worst[0], float(spread)


def _oasst_messages(rows: Iterable[dict], source: str, language: str | None, drops: Drops) -> dict:
    msgs: dict[str, dict] = {}
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [k for k in ("message_id", "parent_id", "text", "role", "message_tree_id") if k not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing}")
            continue
        if r.get("deleted"):
            drops.add(source, "deleted_message", r["message_id"])
            continue
        if language and r.get("lang") not in (None, language):
            drops.add(source, f"language_not_{language}", r.get("lang"))
            continue
        if not str(r.get("text") or "").strip():
            drops.add(source, "empty_text", r["message_id"])
            continue
        msgs[r["message_id"]] = r
    return msgs


def split_trees(tree_ids: Iterable[str], heldout_fraction: float, seed: int) -> tuple[set, set]:
    trees = sorted(set(tree_ids))
    rng = random.Random(seed)
    rng.shuffle(trees)
    n_held = int(round(heldout_fraction * len(trees)))
    return set(trees[n_held:]), set(trees[:n_held])


def parse_oasst(rows: Iterable[dict], spec: SourceSpec, language: str | None, seed: int,
                drops: Drops) -> tuple[list[dict], list[dict], dict]:
    """Every prompter turn with >= 2 assistant replies carrying the label -> one pair.

    Returns (train rows, held-out rows, split record). The held-out rows use
    `spec.heldout_label` (default: the human `rank`) so evaluation measures human preference."""
    source = spec.name
    msgs = _oasst_messages(rows, source, language, drops)
    children: dict[str, list[dict]] = defaultdict(list)
    for m in msgs.values():
        if m.get("parent_id"):
            children[m["parent_id"]].append(m)
    train_trees, held_trees = split_trees((m["message_tree_id"] for m in msgs.values()),
                                          spec.heldout_fraction, seed)

    def context_of(m: dict) -> list[dict]:
        chain, cur = [], msgs.get(m.get("parent_id") or "")
        while cur is not None:
            chain.append({"role": "user" if cur["role"] == "prompter" else "assistant",
                          "content": cur["text"]})
            cur = msgs.get(cur.get("parent_id") or "")
        return chain[::-1]

    train, held, seen = [], [], set()
    for m in sorted(msgs.values(), key=lambda x: (x["message_tree_id"], x.get("created_date") or "",
                                                   x["message_id"])):
        if m["role"] != "prompter":
            continue
        replies = [c for c in children.get(m["message_id"], []) if c["role"] == "assistant"]
        is_held = m["message_tree_id"] in held_trees
        label, prefer = ((spec.heldout_label, spec.heldout_prefer) if is_held
                         else (spec.label, spec.prefer))
        scored = [(c["text"], get_label(c, label)) for c in replies]
        with_label = [(t, s) for t, s in scored if s is not None]
        if len(replies) < 2:
            drops.add(source, "fewer_than_2_replies", m["text"][:80])
            continue
        if len(with_label) < 2:
            drops.add(source, f"fewer_than_2_replies_with_{label}", m["text"][:80])
            continue
        pair = ordinal_to_pair(with_label, prefer)
        if pair is None:
            drops.add(source, f"tied_{label}", m["text"][:80])
            continue
        context = context_of(m)
        key = (json.dumps(context), m["text"].strip())
        if key in seen:
            drops.add(source, "duplicate_prompt", m["text"][:80])
            continue
        seen.add(key)
        chosen, rejected, spread = pair
        row = dict(prompt=m["text"].strip(), context=json.dumps(context), chosen=chosen.strip(),
                   rejected=rejected.strip(), source=source, supervision="numerical",
                   quality=spread, label=f"{label}:{prefer}", n_responses=len(with_label),
                   prompt_id=stable_id(source, m["message_id"]), tree_id=m["message_tree_id"],
                   message_id=m["message_id"])
        (held if is_held else train).append(row)
    record = {"source": source, "seed": seed, "heldout_fraction": spec.heldout_fraction,
              "train_trees": len(train_trees), "heldout_trees": len(held_trees),
              "heldout_tree_ids": sorted(held_trees)}
    return train, held, record


# --------------------------------------------------------------------------- WinoBias
PRONOUNS = ("he", "she", "him", "her", "his", "hers", "himself", "herself")
_WB_LINE = re.compile(r"^\s*(\d+)\s+(.*\S)\s*$")


@dataclass
class WBSentence:
    words: list[str]            # sentence words without brackets, punctuation attached as written
    mentions: list[tuple[int, int]]  # [start, end] word spans of the bracketed mentions
    line: str

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def span_words(self, i: int) -> list[str]:
        s, e = self.mentions[i]
        return [re.sub(r"[^\w'-]", "", w) for w in self.words[s:e + 1]]

    @property
    def pronoun(self) -> str | None:
        for i in range(len(self.mentions)):
            ws = [w.lower() for w in self.span_words(i)]
            if len(ws) == 1 and ws[0] in PRONOUNS:
                return ws[0]
        return None

    @property
    def pronoun_index(self) -> int | None:
        for i in range(len(self.mentions)):
            ws = [w.lower() for w in self.span_words(i)]
            if len(ws) == 1 and ws[0] in PRONOUNS:
                return self.mentions[i][0]
        return None

    @property
    def referent_words(self) -> list[str]:
        """Words of the non-pronoun mention (the occupation), e.g. ['The', 'developer']."""
        for i in range(len(self.mentions)):
            ws = self.span_words(i)
            if not (len(ws) == 1 and ws[0].lower() in PRONOUNS):
                return ws
        return []

    @property
    def referent(self) -> str:
        """Head word of the occupation mention (its last word), e.g. 'developer'."""
        ws = self.referent_words
        return ws[-1] if ws else ""

    @property
    def cluster_words(self) -> list[str]:
        """Every word of the coreference cluster (mention words + pronoun)."""
        out = []
        for i in range(len(self.mentions)):
            out += [w for w in self.span_words(i) if w]
        return out


def parse_winobias_line(line: str) -> WBSentence | None:
    """`N [The developer] argued with the designer because [he] did not like the design.`"""
    m = _WB_LINE.match(line)
    if not m:
        return None
    body = m.group(2)
    words, mentions, start, depth = [], [], None, 0
    for tok in body.split():
        opens, closes = tok.count("["), tok.count("]")
        clean = tok.replace("[", "").replace("]", "")
        if opens:
            if depth:
                return None
            start, depth = len(words), 1
        if clean:
            words.append(clean)
        if closes:
            if not depth or start is None:
                return None
            mentions.append((start, len(words) - 1))
            depth, start = 0, None
    if depth or len(mentions) < 2:
        return None
    return WBSentence(words=words, mentions=mentions, line=line)


def winobias_from_hf(row: dict) -> WBSentence | None:
    """HF `wino_bias` row (tokens + coreference_clusters as [start, end, start, end] strings)."""
    toks = list(row.get("tokens") or [])
    cl = [int(x) for x in (row.get("coreference_clusters") or [])]
    if not toks or len(cl) < 4 or len(cl) % 2:
        return None
    mentions = [(cl[i], cl[i + 1]) for i in range(0, len(cl), 2)]
    words: list[str] = []
    index_map = {}
    for i, t in enumerate(toks):
        if t in (".", ",", "?", "!", ";", ":") and words:
            words[-1] += t
            index_map[i] = len(words) - 1
        else:
            words.append(t)
            index_map[i] = len(words) - 1
    mentions = [(index_map[s], index_map[e]) for s, e in mentions]
    return WBSentence(words=words, mentions=mentions, line=" ".join(toks))


WB_FILE = "winobias/{kind}_stereotyped_type{t}.txt.{split}"


def winobias_lines(kind: str, t: int, split: str, root: Path | None) -> tuple[str, list[str]]:
    rel = WB_FILE.format(kind=kind, t=t, split=split)
    if root is not None:
        return rel, read_text_lines(mirror_file(root, rel))
    return rel, read_text_lines(WINOBIAS_URL.format(name=rel.split("/", 1)[1]))


def load_winobias_pairs(split: str, root: Path | None, source: str, drops: Drops,
                        types: tuple[int, ...] = (1, 2)) -> list[dict]:
    """Pro/anti pairs of the given split: [{type, index, pro: WBSentence, anti: WBSentence}].

    Lines that do not parse (no bracketed mention / no pronoun) are counted skips. A line pair
    with a different occupation is a counted skip (`pro_anti_mismatch`; the real test type-2
    files have one, line 382); files that do not pair up (different line counts, or more than
    5% mismatched lines) raise DataError naming both files and the first mismatch. The real files are not always exact
    minimal pairs (e.g. dev type1 #92 "...needed a desk." vs "...needed one."): kept, as the
    authors' evaluation keeps them."""
    pairs = []
    for t in types:
        pro_name, pro_lines = winobias_lines("pro", t, split, root)
        anti_name, anti_lines = winobias_lines("anti", t, split, root)
        pro_lines = [x for x in pro_lines if x.strip()]
        anti_lines = [x for x in anti_lines if x.strip()]
        if len(pro_lines) != len(anti_lines):
            raise DataError(f"WinoBias files do not pair up: {pro_name} has {len(pro_lines)} lines, "
                            f"{anti_name} has {len(anti_lines)}")
        mismatches = []
        for i, (pl, al) in enumerate(zip(pro_lines, anti_lines), 1):
            p, a = parse_winobias_line(pl), parse_winobias_line(al)
            if p is None or a is None:
                drops.add(source, "no_bracketed_mentions", pl if p is None else al)
                continue
            if p.pronoun is None or a.pronoun is None:
                drops.add(source, "no_pronoun", pl)
                continue
            if pl.split()[0] != al.split()[0] or p.referent.lower() != a.referent.lower():
                mismatches.append((i, pl, al))
                drops.add(source, "pro_anti_mismatch", f"{pro_name}:{i}: '{pl}' vs '{al}'")
                continue
            pairs.append({"type": t, "index": i, "pro": p, "anti": a})
        if len(mismatches) > max(2, 0.05 * len(pro_lines)):
            i, pl, al = mismatches[0]
            raise DataError(f"WinoBias files do not pair up ({len(mismatches)} of {len(pro_lines)} "
                            f"lines differ in their occupation): first at line {i}: {pro_name}: "
                            f"'{pl}' vs {anti_name}: '{al}'")
    return pairs


def winobias_hf_pairs(split: str, source: str, drops: Drops) -> list[dict]:
    pairs = []
    for t in (1, 2):
        pro = hub_rows("wino_bias", f"type{t}_pro", split)
        anti = hub_rows("wino_bias", f"type{t}_anti", split)
        for i, (pr, ar) in enumerate(zip(pro, anti), 1):
            p, a = winobias_from_hf(pr), winobias_from_hf(ar)
            if p is None or a is None or p.pronoun is None or a.pronoun is None:
                drops.add(source, "no_pronoun", pr.get("tokens"))
                continue
            pairs.append({"type": t, "index": i, "pro": p, "anti": a})
    return pairs


def winobias_to_rows(pairs: list[dict], source: str, drops: Drops) -> list[dict]:
    """Anti-stereotypical preferred over pro-stereotypical (paper §2.3).

    The prompt is the words both sentences share before the pronoun; chosen / rejected are the
    anti / pro continuations, so the pair is a real (prompt, preferred, non-preferred) row."""
    out, seen = [], set()
    for pr in pairs:
        p, a = pr["pro"], pr["anti"]
        k = next((i for i, (x, y) in enumerate(zip(p.words, a.words)) if x != y), None)
        if k is None:
            drops.add(source, "identical_pair", p.line)
            continue
        prompt = " ".join(p.words[:k])
        chosen, rejected = " ".join(a.words[k:]), " ".join(p.words[k:])
        if not prompt:
            drops.add(source, "empty_text", p.line)
            continue
        if (prompt, chosen) in seen:
            drops.add(source, "duplicate_prompt", p.line)
            continue
        seen.add((prompt, chosen))
        out.append(dict(prompt=prompt, context="[]", chosen=chosen, rejected=rejected, source=source,
                        supervision="pairwise", quality=None, label=None, n_responses=2,
                        prompt_id=stable_id(source, pr["type"], p.text, a.text)))
    return out


# --------------------------------------------------------------------------- generic sources
def parse_numeric(rows: Iterable[dict], spec: SourceSpec, drops: Drops) -> list[dict]:
    """Any dataset with (prompt, response, score) rows: group by prompt -> best/worst pair."""
    source, groups = spec.name, defaultdict(list)
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [c for c in (spec.prompt_column, spec.response_column, spec.label) if c not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing}")
            continue
        prompt, resp, score = r[spec.prompt_column], r[spec.response_column], r[spec.label]
        if not isinstance(prompt, str) or not prompt.strip() or not isinstance(resp, str) or not resp.strip():
            drops.add(source, "empty_text", r)
            continue
        try:
            score = float(score)
        except (TypeError, ValueError):
            score = float("nan")
        if not math.isfinite(score):
            drops.add(source, f"missing_{spec.label}", r)
            continue
        groups[prompt.strip()].append((resp.strip(), score))
    out = []
    for prompt, responses in groups.items():
        if len(responses) < 2:
            drops.add(source, "fewer_than_2_replies", prompt)
            continue
        pair = ordinal_to_pair(responses, spec.prefer)
        if pair is None:
            drops.add(source, f"tied_{spec.label}", prompt)
            continue
        chosen, rejected, spread = pair
        out.append(dict(prompt=prompt, context="[]", chosen=chosen, rejected=rejected, source=source,
                        supervision="numerical", quality=spread, label=f"{spec.label}:{spec.prefer}",
                        n_responses=len(responses), prompt_id=stable_id(source, prompt)))
    return out


def parse_pairwise(rows: Iterable[dict], spec: SourceSpec, drops: Drops) -> list[dict]:
    source, out, seen = spec.name, [], set()
    cols = (spec.prompt_column, spec.chosen_column, spec.rejected_column)
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [c for c in cols if c not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing}")
            continue
        vals = [r[c] for c in cols]
        if not all(isinstance(v, str) and v.strip() for v in vals):
            drops.add(source, "empty_text", r)
            continue
        prompt, chosen, rejected = (v.strip() for v in vals)
        if chosen == rejected:
            drops.add(source, "identical_pair", r)
            continue
        if prompt in seen:
            drops.add(source, "duplicate_prompt", prompt)
            continue
        seen.add(prompt)
        out.append(dict(prompt=prompt, context="[]", chosen=chosen, rejected=rejected, source=source,
                        supervision="pairwise", quality=None, label=None, n_responses=2,
                        prompt_id=stable_id(source, prompt)))
    return out


# --------------------------------------------------------------------------- the union
@dataclass
class UnionResult:
    union: pd.DataFrame
    heldout: pd.DataFrame
    drops: pd.DataFrame
    splits: list[dict]
    fingerprint: str

    SPLIT_KEYS = ("source", "seed", "heldout_fraction", "train_trees", "heldout_trees", "heldout_pairs")

    def __post_init__(self):
        # one key order however the record was obtained (built now, or read back from JSON with
        # sorted keys), so the split table has the same columns in every run
        self.splits = [{**{k: s[k] for k in self.SPLIT_KEYS if k in s},
                        **{k: s[k] for k in sorted(s) if k not in self.SPLIT_KEYS}} for s in self.splits]


def _dedupe(rows: list[dict], source: str, drops: Drops) -> list[dict]:
    out, seen = [], set()
    for r in rows:
        key = (r["context"], r["prompt"])
        if key in seen:
            drops.add(source, "duplicate_prompt", r["prompt"][:80])
            continue
        seen.add(key)
        out.append(r)
    return out


def convert_source(spec: SourceSpec, params: Params, drops: Drops) -> tuple[list[dict], list[dict], dict | None]:
    root = data_dir(params)
    held: list[dict] = []
    record = None
    if spec.type == "winogrande":
        rows = parse_winogrande(load_winogrande_rows(spec.split or "train_xs", root), spec.name, drops)
    elif spec.type == "oasst":
        raw = load_oasst_rows(spec.split or "validation", root)
        rows, held, record = parse_oasst(raw, spec, params.data.language, params.seed, drops)
    elif spec.type == "winobias":
        split = spec.split or "dev"
        pairs = (load_winobias_pairs(split, root, spec.name, drops) if root is not None or spec.path is None
                 else winobias_hf_pairs(split, spec.name, drops))
        rows = winobias_to_rows(pairs, spec.name, drops)
    elif spec.type == "numeric":
        rows = parse_numeric(read_table(spec.path, spec.split), spec, drops)
    else:
        rows = parse_pairwise(read_table(spec.path, spec.split), spec, drops)
    rows = _dedupe(rows, spec.name, drops)
    if spec.max_rows is not None and len(rows) > spec.max_rows:
        rng = random.Random(f"{params.seed}:{spec.name}")
        keep = set(rng.sample(range(len(rows)), spec.max_rows))
        drops.add(spec.name, "over_max_rows", n=len(rows) - len(keep))
        rows = [r for i, r in enumerate(rows) if i in keep]
    return rows, held, record


def _input_fingerprint(params: Params) -> str:
    """Hash of what the union depends on: source specs, language, seed, file sizes/mtimes."""
    root = data_dir(params)
    files = []
    if root is not None:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                st = f.stat()
                files.append((str(f.relative_to(root)), st.st_size, int(st.st_mtime)))
    for s in params.data.sources:
        if s.path and Path(s.path).expanduser().is_file():
            st = Path(s.path).expanduser().stat()
            files.append((s.path, st.st_size, int(st.st_mtime)))
    blob = json.dumps([params.model_dump(mode="json")["data"], params.seed, files, str(root),
                       CONVERTER_VERSION], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_union(params: Params, use_cache: bool = True, progress: bool = True) -> UnionResult:
    """Convert every source of `params.data.sources` and take the union (cached by its inputs)."""
    from .report import atomic_write_json, atomic_write_parquet
    fp = _input_fingerprint(params)
    cdir = params.cache_path / "union" / fp
    if use_cache and (cdir / "done.json").is_file():
        splits = json.loads((cdir / "done.json").read_text())["splits"]
        return UnionResult(pd.read_parquet(cdir / "union.parquet"), pd.read_parquet(cdir / "heldout.parquet"),
                           pd.read_parquet(cdir / "drops.parquet"), splits, fp)
    from tqdm.auto import tqdm
    drops, parts, held, splits = Drops(), [], [], []
    for spec in tqdm(params.data.sources, desc="converting sources", disable=not progress):
        rows, h, record = convert_source(spec, params, drops)
        if not rows:
            raise DataError(f"source '{spec.name}' ({spec.type}) produced no rows; drops: "
                            f"{ {r: n for (s, r), n in drops.counts.items() if s == spec.name} }")
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
    df = g.agg(rows=("prompt_id", "size"), scored=("quality", "count"),
               quality_mean=("quality", "mean"), quality_max=("quality", "max")).reset_index()
    df["share"] = df["rows"] / df["rows"].sum()
    return df


# --------------------------------------------------------------------------- evaluation sets
def load_winogender(params: Params | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(all_sentences, templates, occupations-stats) of Rudinger et al. 2018."""
    root = data_dir(params)
    out = []
    for name in ("all_sentences.tsv", "templates.tsv", "occupations-stats.tsv"):
        src = mirror_file(root, f"winogender/{name}") if root is not None else WINOGENDER_URL.format(name=name)
        lines = read_text_lines(src)
        header = lines[0].split("\t")
        rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:] if ln.strip()]
        out.append(pd.DataFrame(rows, columns=header))
    return tuple(out)  # type: ignore[return-value]


def load_crows_pairs(params: Params | None = None) -> pd.DataFrame:
    root = data_dir(params)
    if root is not None:
        return pd.read_csv(mirror_file(root, "crows_pairs/crows_pairs_anonymized.csv"), index_col=0)
    import io
    return pd.read_csv(io.StringIO("\n".join(read_text_lines(CROWS_URL))), index_col=0)


def load_ifeval(params: Params | None = None) -> list[dict]:
    root = data_dir(params)
    src = mirror_file(root, "ifeval/input_data.jsonl") if root is not None else IFEVAL_URL
    drops = Drops()
    return list(iter_jsonl(read_text_lines(src), "ifeval", drops))


def save_union(result: UnionResult, params: Params) -> Path:
    """Stage-1 outputs under <run>/data: union, OASST held-out pairs, drops, tree split."""
    from .report import atomic_write_json, atomic_write_parquet, provenance
    d = params.run_dir / "data"
    atomic_write_parquet(result.union, d / "union.parquet")
    atomic_write_parquet(result.heldout, d / "oasst_heldout.parquet")
    atomic_write_parquet(result.drops, d / "drops.parquet")
    return atomic_write_json({"fingerprint": result.fingerprint, "splits": result.splits,
                              "rows": len(result.union), "heldout_rows": len(result.heldout),
                              "provenance": provenance(params)}, d / "union_report.json")


def load_union(params: Params) -> UnionResult:
    d = params.run_dir / "data"
    if not (d / "union_report.json").is_file():
        raise DataError(f"stage 1 outputs not found in {d}: run notebook 01 (or "
                        "`python -m hetfb_utils run <params> --only data`) first")
    rep = json.loads((d / "union_report.json").read_text())
    return UnionResult(pd.read_parquet(d / "union.parquet"), pd.read_parquet(d / "oasst_heldout.parquet"),
                       pd.read_parquet(d / "drops.parquet"), rep["splits"], rep["fingerprint"])
