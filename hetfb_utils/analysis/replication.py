"""Verdicts that replicate: the same claims scored on training seeds that were not used to make them.

`python -m hetfb_utils seeds PARAMS --replicate K` (`make seeds ARGS="--replicate K"`) trains the seed group, then K
new seeds (the next K integers after the group's largest seed; the data draw and the evaluation items stay the
same), scores the claims on the new seeds alone, and writes `replication.{csv,md}` beside the group's claims:

* `inside`: the new seeds' estimate lies inside the group's interval;
* `new_p_holm`: the new seeds' p, Holm-adjusted across the claims as the group's are (a new interval that excludes 0
  can still be "not distinguishable" after the adjustment);
* `status`: **replicated** (the new seeds give the same verdict), **not replicated** (another verdict, e.g. not
  distinguishable), **reversed** (the opposite verdict: supported against contradicted);
* `printed`: what the README and RESULTS.md print: the verdict when it replicated, "not distinguishable (did not
  replicate)" otherwise, always with its seed counts.
"""

from __future__ import annotations

import pandas as pd

OPPOSITE = {"supported": "contradicted", "contradicted": "supported"}


def _core(verdict: str) -> str:
    """The verdict without its qualifier: 'supported (exploratory)' -> 'supported'."""
    return str(verdict).split(" (")[0]


def _seeds(conclusion: str) -> str:
    """'recipe (5 vs 0 seeds x 400 items)' -> '5 vs 0 seeds x 400 items'."""
    text = str(conclusion)
    return text[text.find("(") + 1 : text.rfind(")")] if "(" in text else text


def replication_table(original: pd.DataFrame, new: pd.DataFrame, new_seeds: list[int]) -> pd.DataFrame:
    """Each claim: the group's verdict and interval, the new seeds' estimate, interval and verdict, whether the
    estimate falls inside the interval, the replication status and the verdict to print."""
    rows = []
    fresh = new.set_index("id") if len(new) else pd.DataFrame()
    for _, o in original.iterrows():
        n = fresh.loc[o["id"]] if o["id"] in fresh.index else None
        row = {
            "id": o["id"],
            "claim": o["claim"],
            "comparison": o.get("comparison"),
            "metric": o["metric"],
            "verdict": o["verdict"],
            "estimate": o.get("estimate"),
            "lo": o.get("lo"),
            "hi": o.get("hi"),
            "seeds": _seeds(o.get("conclusion", "")),
            "new_seeds": " ".join(f"s{s}" for s in new_seeds),
            "new_p_holm": n.get("p_holm") if n is not None else None,
        }
        if o["verdict"] == "not tested" or n is None or n["verdict"] == "not tested":
            rows.append({**row, "status": "not tested", "printed": o["verdict"]})
            continue
        a, b = _core(o["verdict"]), _core(n["verdict"])
        status = "replicated" if a == b else ("reversed" if OPPOSITE.get(a) == b else "not replicated")
        printed = (
            o["verdict"]
            if status == "replicated" or a == "not distinguishable"
            else ("not distinguishable (did not replicate)")
        )
        rows.append(
            {
                **row,
                "new_estimate": n["estimate"],
                "new_lo": n["lo"],
                "new_hi": n["hi"],
                "new_verdict": n["verdict"],
                "inside": bool(o["lo"] <= n["estimate"] <= o["hi"]),
                "status": status,
                "printed": printed,
            }
        )
    return pd.DataFrame(rows)
