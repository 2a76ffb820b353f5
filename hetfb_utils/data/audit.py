"""Shortcuts in the union: surface features on which a source's `chosen` differs from its `rejected` though
the paper never meant them to carry the preference.

A model trained on preference pairs learns whatever separates chosen from rejected. If the longer reply wins
80 % of a source's pairs, or a female pronoun is `chosen` in 64 % of WinoBias rows, the cheapest thing to learn
is length or gender, not "less toxic" or "anti-stereotypical". `shortcut_audit` measures, per source:

* **length**: the share of pairs whose `chosen` is the longer reply (ties left out), with its Wilson interval;
* **gender** (rows whose replies carry a gendered pronoun): the share whose `chosen` is the female one;
* **position** (binary sources with `answer`): the share whose correct option is option 1.

A share whose interval excludes 0.5 is flagged: the feature predicts the label on its own. Whether that is a
defect depends on the source (longer OASST replies may really be better; a gender skew in WinoBias is not
what the paper asked for), so the table reports and the notebook reads it.
"""

from __future__ import annotations

import re

import pandas as pd

from ..common.stats import proportion

FEMALE = frozenset({"she", "her", "hers", "herself"})
MALE = frozenset({"he", "him", "his", "himself"})
_WORD = re.compile(r"[a-z']+")


def pronoun_gender(text: str) -> str | None:
    """'F' or 'M' when the text's gendered pronouns are of one gender, else None."""
    words = set(_WORD.findall(str(text).lower()))
    f, m = bool(words & FEMALE), bool(words & MALE)
    return "F" if f and not m else "M" if m and not f else None


def _share(hits: int, n: int, feature: str, source: str, what: str) -> dict:
    ci = proportion(hits, n)
    return {
        "source": source,
        "feature": feature,
        "what": what,
        "pairs": n,
        "share": ci["value"],
        "lo": ci["lo"],
        "hi": ci["hi"],
        "predicts_label": bool(n and not ci["at_chance"]),
    }


def shortcut_audit(union: pd.DataFrame) -> pd.DataFrame:
    """Per source and surface feature: the share of pairs the feature alone gets right, its Wilson interval
    and whether that interval excludes 0.5 (`predicts_label`)."""
    rows = []
    for source, g in union.groupby("source", sort=False):
        lc, lr = g["chosen"].str.len(), g["rejected"].str.len()
        untied = lc != lr
        rows.append(_share(int((lc > lr)[untied].sum()), int(untied.sum()), "length", source, "chosen is longer"))
        gc, gr = g["chosen"].map(pronoun_gender), g["rejected"].map(pronoun_gender)
        gendered = gc.notna() & gr.notna() & (gc != gr)
        if gendered.sum() >= 10:
            rows.append(
                _share(int((gc[gendered] == "F").sum()), int(gendered.sum()), "gender", source, "chosen is female")
            )
        if "answer" in g and g["answer"].notna().any():
            ans = g["answer"].dropna()
            rows.append(_share(int((ans == 1).sum()), len(ans), "position", source, "option 1 is correct"))
    return pd.DataFrame(rows)


def gender_balance(union: pd.DataFrame) -> pd.DataFrame:
    """Per source (and WinoBias sentence type) of the pairs whose replies differ in pronoun gender: how many
    `chosen` replies are the female one and how many the male one. The WinoBias files are balanced (each twin pair
    has one of each), and so must the union be."""
    g = union.assign(chosen_gender=union["chosen"].map(pronoun_gender), other=union["rejected"].map(pronoun_gender))
    g = g[g["chosen_gender"].notna() & g["other"].notna() & (g["chosen_gender"] != g["other"])]
    by = ["source"]
    if "wb_type" in g and g["wb_type"].notna().any():
        g = g.assign(wb_type=g["wb_type"].astype("Int64"))
        by.append("wb_type")
    out = g.groupby(by)["chosen_gender"].value_counts().unstack(fill_value=0).reindex(columns=["F", "M"], fill_value=0)
    out.columns.name = None
    return out.rename(columns={"F": "chosen female", "M": "chosen male"}).reset_index()
