"""Per-format converters to the unified preference row: WinoGrande (binary), OASST1 (numerical
labels -> ordinal -> best/worst pair, paper App. A.2), and the generic `numeric` and `pairwise`
sources. WinoBias is in `winobias_data`. Each takes raw rows from `readers` and a `Drops`.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..common.params import SourceSpec
from .readers import DataError, Drops, hub_rows, is_number, jsonl_rows, mirror_file, preference_row, stable_id

WINOGRANDE_SPLITS = ["train_xs", "train_s", "train_m", "train_l", "train_xl", "validation"]


def load_winogrande_rows(split: str, root: Path | None) -> list[dict]:
    """WinoGrande rows of a split: from the mirror (`winogrande/<split>.jsonl`), else from the Hub."""
    if split not in WINOGRANDE_SPLITS:
        raise DataError(f"winogrande split '{split}' unknown; use one of {WINOGRANDE_SPLITS}")
    if root is not None:
        return jsonl_rows(mirror_file(root, f"winogrande/{split}.jsonl"))
    if split == "validation":
        return hub_rows("allenai/winogrande", "winogrande_debiased", "validation")
    return hub_rows("allenai/winogrande", "winogrande_" + split.split("_")[1], "train")


def parse_winogrande(rows: Iterable[dict], source: str, drops: Drops) -> list[dict]:
    """(sentence with `_`, correct option, other option). Twins (two sentences that differ in a trigger word and
    swap the answer between the same two options) share a `group_id`: a model that learns "option X wins
    here" from one twin is pushed below chance on the other, so they are never split apart."""
    out = []
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [k for k in ("sentence", "option1", "option2", "answer") if k not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing} in {r}")
            continue
        sent, o1, o2, ans = (
            str(r["sentence"] or "").strip(),
            str(r["option1"] or "").strip(),
            str(r["option2"] or "").strip(),
            str(r["answer"]).strip(),
        )
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
        out.append(
            preference_row(
                sent,
                chosen,
                rejected,
                source=source,
                supervision="binary",
                prompt_id=stable_id(source, sent, o1, o2),
                group_id=stable_id(source, "twin", *sorted((o1.lower(), o2.lower()))),
                option1=o1,
                option2=o2,
                answer=int(ans),
            )
        )
    return out


# --------------------------------------------------------------------------- OASST1
def load_oasst_rows(split: str, root: Path | None) -> list[dict]:
    """OASST1 message rows of a split: from the mirror (the English validation split), else from the Hub."""
    if root is not None:
        name = {"validation": "oasst1/validation_en.jsonl", "train": "oasst1/train_en.jsonl"}.get(split)
        if name is None or (split == "train" and not (root / name).is_file()):
            raise DataError(
                f"the mirror {root} has no OASST1 '{split}' split (the shared mirror holds "
                "validation only). Use split: validation with heldout_fraction > 0 to split "
                "it by tree, or load from the Hub (unset HETFB_DATA_DIR; needs network)."
            )
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
                return float(v) if is_number(v) else None
        return None
    node: Any = msg
    for part in label.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if is_number(node) else None


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
        if not isinstance(r["message_id"], str) or not r["message_id"]:
            drops.add(source, "missing_message_id", str(r)[:120])
            continue
        if not isinstance(r["message_tree_id"], str) or not r["message_tree_id"]:
            drops.add(source, "missing_message_tree_id", r["message_id"])
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
    """(train, held-out) message-tree ids: a seeded shuffle, `heldout_fraction` of the trees held out."""
    trees = sorted(set(tree_ids))
    rng = random.Random(seed)
    rng.shuffle(trees)
    n_held = int(round(heldout_fraction * len(trees)))
    return set(trees[n_held:]), set(trees[:n_held])


def oasst_context(msgs: dict, m: dict) -> list[dict] | None:
    """The turns before message `m`, oldest first (user / assistant roles); None when the parent chain loops back
    on itself (a damaged export)."""
    chain, cur, visited = [], msgs.get(m.get("parent_id") or ""), {m["message_id"]}
    while cur is not None:
        if cur["message_id"] in visited:
            return None
        visited.add(cur["message_id"])
        chain.append({"role": "user" if cur["role"] == "prompter" else "assistant", "content": cur["text"]})
        cur = msgs.get(cur.get("parent_id") or "")
    return chain[::-1]


def _oasst_pair(m: dict, replies: list[dict], label: str, prefer: str, source: str, drops: Drops):
    """(chosen, rejected, spread, replies with the label) of a prompter turn, or None with the reason counted."""
    with_label = [(t, s) for t, s in ((c["text"], get_label(c, label)) for c in replies) if s is not None]
    if len(replies) < 2:
        drops.add(source, "fewer_than_2_replies", m["text"][:80])
    elif len(with_label) < 2:
        drops.add(source, f"fewer_than_2_replies_with_{label}", m["text"][:80])
    elif (pair := ordinal_to_pair(with_label, prefer)) is None:
        drops.add(source, f"tied_{label}", m["text"][:80])
    elif pair[0].strip() == pair[1].strip():
        drops.add(source, "identical_pair", m["text"][:80])
    else:
        return (*pair, len(with_label))
    return None


def parse_oasst(
    rows: Iterable[dict], spec: SourceSpec, language: str | None, seed: int, drops: Drops
) -> tuple[list[dict], list[dict], dict]:
    """Every prompter turn with >= 2 assistant replies carrying the label -> one pair.

    Returns (train rows, held-out rows, split record). The held-out rows use
    `spec.heldout_label` (default: the human `rank`) so evaluation measures human preference."""
    source = spec.name
    msgs = _oasst_messages(rows, source, language, drops)
    children: dict[str, list[dict]] = defaultdict(list)
    for m in msgs.values():
        if m.get("parent_id"):
            children[m["parent_id"]].append(m)
    train_trees, held_trees = split_trees((m["message_tree_id"] for m in msgs.values()), spec.heldout_fraction, seed)
    train, held, seen = [], [], set()
    for m in sorted(msgs.values(), key=lambda x: (x["message_tree_id"], x.get("created_date") or "", x["message_id"])):
        if m["role"] != "prompter":
            continue
        is_held = m["message_tree_id"] in held_trees
        label, prefer = (spec.heldout_label, spec.heldout_prefer) if is_held else (spec.label, spec.prefer)
        replies = [c for c in children.get(m["message_id"], []) if c["role"] == "assistant"]
        pair = _oasst_pair(m, replies, label, prefer, source, drops)
        if pair is None:
            continue
        context = oasst_context(msgs, m)
        if context is None:
            drops.add(source, "parent_id_cycle", m["message_id"])
            continue
        chosen, rejected, spread, n_scored = pair
        key = (json.dumps(context), m["text"].strip(), chosen.strip(), rejected.strip())
        if key in seen:
            drops.add(source, "duplicate_pair", m["text"][:80])
            continue
        seen.add(key)
        row = preference_row(
            m["text"].strip(),
            chosen.strip(),
            rejected.strip(),
            source=source,
            supervision="numerical",
            prompt_id=stable_id(source, m["message_id"]),
            group_id=stable_id(source, "tree", m["message_tree_id"]),
            context=json.dumps(context),
            quality=spread,
            label=f"{label}:{prefer}",
            n_responses=n_scored,
            tree_id=m["message_tree_id"],
            message_id=m["message_id"],
        )
        (held if is_held else train).append(row)
    record = {
        "source": source,
        "seed": seed,
        "heldout_fraction": spec.heldout_fraction,
        "train_trees": len(train_trees),
        "heldout_trees": len(held_trees),
        "heldout_tree_ids": sorted(held_trees),
    }
    return train, held, record


# --------------------------------------------------------------------------- generic sources
def as_text(v: Any) -> str | None:
    """A field as text: strings as they are, numbers (`4`, `0.5`) as written; None / NaN / bool / containers
    are not text."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:g}" if isinstance(v, float) else str(v)
    return None


def chat_turns(v: Any) -> list[dict] | None:
    """A chat-format field (a list of {role, content} messages, UltraFeedback style) as such; None otherwise."""
    if isinstance(v, list) and v and all(isinstance(m, dict) and "role" in m and "content" in m for m in v):
        return [{"role": str(m["role"]), "content": as_text(m["content"]) or ""} for m in v]
    return None


def split_chat(turns: list[dict]) -> tuple[list[dict], str | None, str | None]:
    """(context, prompt, response) of a conversation: the last assistant turn is the response, the user turn
    before it the prompt, the turns before that the context."""
    last = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=None)
    if last is None:
        return [], None, None
    user = max((i for i, m in enumerate(turns[:last]) if m["role"] == "user"), default=None)
    prompt = turns[user]["content"] if user is not None else None
    return (turns[:user] if user is not None else []), prompt, turns[last]["content"]


def _pairwise_fields(r: dict, spec: SourceSpec) -> tuple[list, str | None, str | None, str | None]:
    """(context, prompt, chosen, rejected) of a pairwise row: plain text columns, or chat-format chosen /
    rejected (the last assistant turn is the response; the prompt column, when the row has one, wins over the
    conversation's last user turn)."""
    chosen, rejected = r.get(spec.chosen_column), r.get(spec.rejected_column)
    prompt = as_text(r.get(spec.prompt_column))
    context: list = []
    c_turns, r_turns = chat_turns(chosen), chat_turns(rejected)
    if c_turns is not None or r_turns is not None:
        c_ctx, c_prompt, chosen = split_chat(c_turns or [])
        _, r_prompt, rejected = split_chat(r_turns or [])
        context = c_ctx
        prompt = prompt if prompt and prompt.strip() else (c_prompt or r_prompt)
    else:
        chosen, rejected = as_text(chosen), as_text(rejected)
    return context, prompt, chosen, rejected


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
        prompt, resp, score = as_text(r[spec.prompt_column]), as_text(r[spec.response_column]), r[spec.label]
        if not prompt or not prompt.strip() or not resp or not resp.strip():
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
        if chosen == rejected:  # the same reply scored twice: no preference to learn
            drops.add(source, "identical_pair", prompt)
            continue
        out.append(
            preference_row(
                prompt,
                chosen,
                rejected,
                source=source,
                supervision="numerical",
                prompt_id=stable_id(source, prompt),
                quality=spread,
                label=f"{spec.label}:{spec.prefer}",
                n_responses=len(responses),
            )
        )
    return out


def parse_pairwise(rows: Iterable[dict], spec: SourceSpec, drops: Drops) -> list[dict]:
    """(prompt, chosen, rejected) rows, plain text or chat-format (lists of {role, content} messages)."""
    source, out, seen = spec.name, [], set()
    for r in rows:
        if "__malformed__" in r:
            drops.add(source, "malformed_json", n=r["__malformed__"])
            continue
        missing = [c for c in (spec.chosen_column, spec.rejected_column) if c not in r]
        if missing:
            drops.add(source, "missing_field", f"{missing}")
            continue
        context, prompt, chosen, rejected = _pairwise_fields(r, spec)
        if not all(isinstance(v, str) and v.strip() for v in (prompt, chosen, rejected)):
            drops.add(source, "empty_text", r)
            continue
        prompt, chosen, rejected = prompt.strip(), chosen.strip(), rejected.strip()
        if chosen == rejected:
            drops.add(source, "identical_pair", r)
            continue
        ctx = json.dumps(context)
        if (ctx, prompt, chosen, rejected) in seen:
            drops.add(source, "duplicate_pair", prompt)
            continue
        seen.add((ctx, prompt, chosen, rejected))
        out.append(
            preference_row(
                prompt,
                chosen,
                rejected,
                source=source,
                supervision="pairwise",
                prompt_id=stable_id(source, ctx, prompt, chosen, rejected),
                group_id=stable_id(source, ctx, prompt),  # the pairs of one prompt stay together
                context=ctx,
            )
        )
    return out
