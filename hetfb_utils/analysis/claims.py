"""The paper's claims (`shared/PAPER.md`), scored by the kit's recipe-level comparisons.

Each claim is a comparison of two Table-1 rows on one metric with the direction the paper states. Its verdict at
the scale of the runs compared:

* **supported**: the interval of the difference excludes 0 (and the scorer's tolerance) in the stated
  direction; for "matches or beats" claims, the interval lies above minus the claim's margin;
* **contradicted**: the interval excludes 0 in the opposite direction;
* **not distinguishable**: neither; the row says the smallest difference this design detects at 80 % power;
* **not tested**: the runs have no such models (e.g. no `-R` rows).

Each verdict names the kind of evidence behind it: recipe-level (k training seeds x n items) or one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    model: str
    reference: str
    metric: str
    expect: str  # "lower", "higher", or "not worse (lower)" / "not worse (higher)"
    margin: float = 0.0  # for "not worse": how much worse still counts as matching


CLAIMS = [
    Claim(
        "C1",
        "The filtered heterogeneous mix (HD-0.2) lowers Bias against Base",
        "PAPER.md §6 headline; Table 1: HD-0.2-S 0.4436 vs Base 0.4585",
        "HD-0.2-S",
        "Base",
        "Bias",
        "lower",
    ),
    Claim(
        "C2",
        "... while keeping Accuracy (no worse than Base by more than 0.05)",
        "PAPER.md §6 headline ('while keeping Accuracy'); Table 1: 0.9204 vs 0.9482",
        "HD-0.2-S",
        "Base",
        "Accuracy",
        "not worse (higher)",
        0.05,
    ),
    Claim(
        "C3",
        "The HD mix lowers Bias against SFT on WinoGrande alone (S)",
        "PAPER.md §6 headline ('against every baseline'); Table 1: HD-0.2-S 0.4436 vs S 1.1721",
        "HD-0.2-S",
        "S",
        "Bias",
        "lower",
    ),
    Claim(
        "C4",
        "A filtered subset matches or beats the full union on Bias (worse by at most 0.03)",
        "PAPER.md §1 ('a filtered subset can match or beat the full union')",
        "HD-0.2-S",
        "HD-1.0-S",
        "Bias",
        "not worse (lower)",
        0.03,
    ),
    Claim(
        "C5",
        "Filtered subsets beat the full union on Bias (Entropy)",
        "PAPER.md §6 headline (Table 1 shows it for -R rows: HD-0.6-R 0.0010 vs HD-1.0-R 0.0068)",
        "HD-0.2-S",
        "HD-1.0-S",
        "Bias (Entropy)",
        "lower",
    ),
    Claim(
        "C6",
        "Filtered subsets beat the full union on Bias (Cluster)",
        "PAPER.md §6 headline (HD-0.6-R 2.9472 vs HD-1.0-R 3.1570)",
        "HD-0.2-S",
        "HD-1.0-S",
        "Bias (Cluster)",
        "lower",
    ),
    Claim(
        "C7",
        "Filtered subsets beat the full union on Accuracy",
        "PAPER.md §6 headline (HD-0.6-R 0.9646 vs HD-1.0-R 0.9583)",
        "HD-0.2-S",
        "HD-1.0-S",
        "Accuracy",
        "higher",
    ),
    Claim(
        "C8",
        "SFT+PPO beats SFT alone (lower Bias)",
        "PAPER.md §6 headline; Table 1: HD-0.2-R 0.4330 vs HD-0.2-S 0.4436",
        "HD-0.2-R",
        "HD-0.2-S",
        "Bias",
        "lower",
    ),
    Claim(
        "C9",
        "The quality x diversity selection beats a random subset of the same size (lower Bias)",
        "implied by PAPER.md §3 (selection is the method); the paper ran no random control",
        "HD-0.2-S",
        "RAND-0.2-S",
        "Bias",
        "lower",
    ),
    Claim(
        "C10",
        "SFT on the HD mix raises Bias (Entropy) over Base",
        "PAPER.md §6, Table 1: HD-0.2-S 0.0580 vs Base 0.0010",
        "HD-0.2-S",
        "Base",
        "Bias (Entropy)",
        "higher",
    ),
    Claim(
        "C11",
        "SFT on the HD mix raises Bias (Cluster) over Base",
        "PAPER.md §6, Table 1: HD-0.2-S 4.5856 vs Base 3.0393",
        "HD-0.2-S",
        "Base",
        "Bias (Cluster)",
        "higher",
    ),
]


def verdict(claim: Claim, estimate: float, lo: float, hi: float, real: bool) -> str:
    """The verdict of one claim from the interval of (model - reference)."""
    good = -1.0 if "lower" in claim.expect else 1.0  # sign of a difference in the claimed direction
    g_lo, g_hi = sorted((good * lo, good * hi))  # the interval in the claimed direction
    if claim.expect.startswith("not worse"):
        if g_lo > -claim.margin:
            return "supported"
        return "contradicted" if real and g_hi < 0 else "not distinguishable"
    if real:
        return "supported" if good * estimate > 0 else "contradicted"
    return "not distinguishable"


def score_claims(diffs: pd.DataFrame, claims: list[Claim] = CLAIMS) -> pd.DataFrame:
    """Each claim with its verdict from `recipe_differences` (Table-1 rows, within a group, in either order; the
    group with the most seeds where both models exist), the interval behind it and the smallest effect that
    design detects."""
    rows = []
    t1 = diffs[diffs["table"] == "table1_winobias"] if len(diffs) else diffs
    if len(t1):
        t1 = t1[t1["group"] == t1["reference_group"]]
        flipped = t1.rename(columns={"model": "reference", "reference": "model", "lo": "hi", "hi": "lo"})
        t1 = pd.concat([t1, flipped.assign(estimate=-flipped["estimate"], lo=-flipped["lo"], hi=-flipped["hi"])])
    for c in claims:
        base = {
            "id": c.id,
            "claim": c.text,
            "source": c.source,
            "comparison": f"{c.model} − {c.reference}",
            "metric": c.metric,
            "expected": c.expect + (f", margin {c.margin:g}" if c.margin else ""),
        }
        hit = (
            t1[(t1["model"] == c.model) & (t1["reference"] == c.reference) & (t1["metric"] == c.metric)]
            if len(t1)
            else t1
        )
        if not len(hit):
            rows.append(
                {**base, "verdict": "not tested", "conclusion": f"{c.model} or {c.reference} not in these runs"}
            )
            continue
        r = (
            hit.assign(_k=hit["seeds"].map(lambda s: max(int(x) for x in str(s).split(" vs "))))
            .sort_values("_k", ascending=False, kind="stable")
            .iloc[0]
        )
        rows.append(
            {
                **base,
                "verdict": verdict(c, r["estimate"], r["lo"], r["hi"], bool(r["real"])),
                "estimate": r["estimate"],
                "lo": r["lo"],
                "hi": r["hi"],
                "p": r["p"],
                "group": r["group"],
                "conclusion": r["conclusion"],
                "detectable_80": r["detectable_80"],
            }
        )
    return pd.DataFrame(rows)
