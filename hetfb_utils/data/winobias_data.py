"""WinoBias (Zhao et al. 2018): the bracketed raw format, pro/anti pairs, and pairs as training rows
(prompt = the words both sentences share before the pronoun, chosen = the anti-stereotypical
continuation)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .readers import WINOBIAS_URL, DataError, Drops, hub_rows, mirror_file, preference_row, read_text_lines, stable_id

PRONOUNS = ("he", "she", "him", "her", "his", "hers", "himself", "herself")
_WB_LINE = re.compile(r"^\s*(\d+)\s+(.*\S)\s*$")


@dataclass
class WBSentence:
    """A WinoBias sentence: its words (brackets removed) and the word spans of its bracketed mentions."""

    words: list[str]  # sentence words without brackets, punctuation attached as written
    mentions: list[tuple[int, int]]  # [start, end] word spans of the bracketed mentions
    line: str

    @property
    def text(self) -> str:
        """The sentence as text."""
        return " ".join(self.words)

    def span_words(self, i: int) -> list[str]:
        """The words of mention `i`, punctuation stripped."""
        s, e = self.mentions[i]
        return [re.sub(r"[^\w'-]", "", w) for w in self.words[s : e + 1]]

    @property
    def pronoun(self) -> str | None:
        """The pronoun mention (lower case), or None."""
        for i in range(len(self.mentions)):
            ws = [w.lower() for w in self.span_words(i)]
            if len(ws) == 1 and ws[0] in PRONOUNS:
                return ws[0]
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


def winobias_files(split: str, types: tuple[int, ...] = (1, 2)) -> list[str]:
    """The mirror files of a split (relative to the mirror), pro and anti of each type."""
    return [WB_FILE.format(kind=k, t=t, split=split) for t in types for k in ("pro", "anti")]


def winobias_lines(kind: str, t: int, split: str, root: Path | None) -> tuple[str, list[str]]:
    """(file name, lines) of one WinoBias file: from the mirror, else from its canonical URL."""
    rel = WB_FILE.format(kind=kind, t=t, split=split)
    if root is not None:
        return rel, read_text_lines(mirror_file(root, rel))
    return rel, read_text_lines(WINOBIAS_URL.format(name=rel.split("/", 1)[1]))


def load_winobias_pairs(
    split: str, root: Path | None, source: str, drops: Drops, types: tuple[int, ...] = (1, 2)
) -> list[dict]:
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
            raise DataError(
                f"WinoBias files do not pair up: {pro_name} has {len(pro_lines)} lines, "
                f"{anti_name} has {len(anti_lines)}"
            )
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
            raise DataError(
                f"WinoBias files do not pair up ({len(mismatches)} of {len(pro_lines)} "
                f"lines differ in their occupation): first at line {i}: {pro_name}: "
                f"'{pl}' vs {anti_name}: '{al}'"
            )
    return pairs


def winobias_hf_pairs(split: str, source: str, drops: Drops) -> list[dict]:
    """Pro/anti pairs of a split from the Hub's `wino_bias` (tokens and clusters), when no mirror is set."""
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
    anti / pro continuations, so the pair is a real (prompt, preferred, non-preferred) row. Lines 2i-1 and 2i
    of a file are twins (the same two occupations, the pronoun on the other referent, opposite genders): one
    `group_id`, so draws and held-out splits keep both or neither and the he / she balance of the files."""
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
        if (prompt, chosen, rejected) in seen:
            drops.add(source, "duplicate_pair", p.line)
            continue
        seen.add((prompt, chosen, rejected))
        out.append(
            preference_row(
                prompt,
                chosen,
                rejected,
                source=source,
                supervision="pairwise",
                prompt_id=stable_id(source, pr["type"], p.text, a.text),
                group_id=stable_id(source, pr["type"], "twin", (pr["index"] + 1) // 2),
                wb_type=pr["type"],
            )
        )
    return out
