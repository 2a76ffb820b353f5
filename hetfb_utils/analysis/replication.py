"""Verdicts that replicate: the claims scored again on training seeds that did not make them.

`python -m hetfb_utils seeds PARAMS --replicate K` (`make seeds ARGS="--replicate K"`) trains the seed group, then K new
seeds (the next K integers after the group's largest seed; the data draw and the evaluation items stay the same), and
writes `replication.{csv,md}`. The rule:

* **the original verdict stays**, and **the headline is the pooled analysis** of all the seeds (original + new, one Holm
  adjustment across the claims): more seeds, a narrower interval;
* a claim the original seeds found **not distinguishable** has nothing to replicate (`nothing to replicate`), whatever
  the new seeds show (a new seed set that alone excludes 0 is not a replication of "we cannot tell");
* a supported or contradicted claim **did not replicate** only when the new seeds disagree with the old: the kit's own
  across-groups contrast (original seeds' difference minus the new seeds', the same items, `multiboot.contrast`)
  excludes 0, or the new seeds' interval lies wholly on the other side of the null. Otherwise it **replicated**.

No second Holm adjustment: the new seeds test one question per claim (do they disagree?), and a 3-seed set after a
second Holm adjustment called stable, true effects "not replicated" in most simulated worlds. The rule's error rates
are simulated with a known truth in `calibration.replication_rates` (tests: a stable true effect is called "did not
replicate", and a true null "replicated", in at most 5 % of worlds).
"""

from __future__ import annotations

import pandas as pd

from .claims import CLAIMS, Claim, _find, _one_sided
from .multiboot import contrast
from .recipes import arms_for
from .runs import SeedGroup

ALPHA = 0.05


def _core(verdict: str) -> str:
    """The verdict without its qualifier: 'supported (exploratory)' -> 'supported'."""
    return str(verdict).split(" (")[0]


def replication_status(original: str, disagree: dict, new: dict, claim: Claim, null: float) -> str:
    """`nothing to replicate`, `did not replicate` or `replicated` (see the module docstring). `disagree`: the
    original-minus-new contrast (lo, hi); `new`: the new seeds' interval (lo, hi)."""
    core = _core(original)
    if core not in ("supported", "contradicted"):
        return "nothing to replicate"
    if disagree["lo"] > 0 or disagree["hi"] < 0:
        return "did not replicate"
    toward = claim.good if core == "supported" else -claim.good  # the side of the null the original verdict is on
    beyond = new["hi"] < null if toward > 0 else new["lo"] > null
    return "did not replicate" if beyond else "replicated"


def replicate_claim(claim: Claim, original: SeedGroup, new: SeedGroup, verdict: str, seed: int = 0) -> dict | None:
    """One claim on the new seeds: their own estimate and interval (no adjustment), the original-minus-new contrast,
    the status. None when the runs do not hold the claim's comparison in both groups."""
    hit = _find([original], claim)
    if hit is None:
        return None
    _, model, ref = hit
    a = arms_for(original, model, ref, metric=claim.metric)
    b = arms_for(new, model, ref, metric=claim.metric)
    if not a or not b:
        return None
    null = -claim.good * claim.margin
    fresh = contrast(b, [1.0, -1.0], null=null, seed=seed)
    disagree = contrast(a + b, [1.0, -1.0, -1.0, 1.0], seed=seed)
    return {
        "new_estimate": fresh["estimate"],
        "new_lo": fresh["lo"],
        "new_hi": fresh["hi"],
        "new_p": min(1.0, 2 * min(_one_sided(claim, fresh))),
        "difference_old_minus_new": disagree["estimate"],
        "difference_lo": disagree["lo"],
        "difference_hi": disagree["hi"],
        "status": replication_status(verdict, disagree, fresh, claim, null),
    }


def replication_table(
    original_claims: pd.DataFrame,
    pooled_claims: pd.DataFrame,
    original: SeedGroup,
    new: SeedGroup,
    claims: list[Claim] = CLAIMS,
) -> pd.DataFrame:
    """Each claim: the original verdict and interval, the new seeds' estimate and interval, the original-minus-new
    contrast, the status, and the headline (the pooled analysis' verdict, interval, Holm p and evidence)."""
    by_id = {c.id: c for c in claims}
    pooled = pooled_claims.set_index("id")
    new_seeds = " ".join(f"s{s}" for s in new.seeds)
    rows = []
    for _, o in original_claims.iterrows():
        row = {
            "id": o["id"],
            "claim": o["claim"],
            "comparison": o.get("comparison"),
            "metric": o["metric"],
            "original_verdict": o["verdict"],
            "original_estimate": o.get("estimate"),
            "original_lo": o.get("lo"),
            "original_hi": o.get("hi"),
            "original_seeds": " ".join(f"s{s}" for s in original.seeds),
            "new_seeds": new_seeds,
        }
        rep = replicate_claim(by_id[o["id"]], original, new, o["verdict"]) if o["id"] in by_id else None
        row.update(rep or {"status": "not tested"})
        if o["id"] in pooled.index:
            p = pooled.loc[o["id"]]
            row.update(
                {
                    "headline_verdict": p["verdict"],
                    "headline_estimate": p.get("estimate"),
                    "headline_lo": p.get("lo"),
                    "headline_hi": p.get("hi"),
                    "headline_adj_lo": p.get("adj_lo"),
                    "headline_adj_hi": p.get("adj_hi"),
                    "headline_p_holm": p.get("p_holm"),
                    "headline_evidence": p.get("conclusion"),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)
