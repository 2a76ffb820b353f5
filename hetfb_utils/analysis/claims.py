"""The paper's claims (docs/paper.md), scored by the kit's recipe-level comparisons.

Each claim is a comparison of two Table-1 rows on one metric with the direction the paper states. It lists the
comparisons that can test it, the paper's own evidence first (e.g. HD-0.6-R − HD-1.0-R for "filtered subsets
beat the full union"); the first one the runs hold is scored, and a row that scores another comparison than the
paper's says so (`tests`). The claims are one declared family: their p-values are adjusted with Holm's step-down
method across the claims tested (`p` raw, `p_holm` adjusted), and a verdict needs `p_holm` < 0.05:

* **supported**: the difference lies in the stated direction (for "not worse by more than m" claims: the
  difference in the stated direction is above -m, a one-sided test against -m);
* **contradicted**: the difference lies in the opposite direction (for "not worse" claims: the whole interval
  lies beyond the margin, i.e. worse by more than m);
* **not distinguishable**: neither (an interval that straddles the margin says nothing either way); the row says
  the smallest difference this design detects at 80 % power;
* **not tested**: the runs have none of the claim's comparisons.

Each verdict names its evidence: a recipe (k training seeds per arm x n items, the seeds named; **exploratory** with
fewer than 4 seeds in a trained arm, `multiboot.EXPLORATORY_BELOW`), or one trained model (a one-seed arm: about that
model, not its recipe).

Beside each verdict: the unadjusted 95 % interval (`lo`, `hi`) and the **Holm-consistent** interval (`adj_lo`,
`adj_hi`: the pivot's interval at level 1 - 0.05 p / p_holm, which excludes the null exactly when the Holm-adjusted
verdict is not "not distinguishable"); the Monte Carlo error of the p-value (`p_mc_se`; a verdict within three of them
of the threshold says so); the effect the design detects with 80 % power (`design.detectable_effect`: for the kit's
interval); and a **leave-one-seed-out** diagnostic (`loso`): the verdict with each training seed left out in turn, and
the seeds whose removal changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..common.stats import holm
from .multiboot import contrast
from .recipes import arms_for, conclusion_kind
from .runs import SeedGroup

ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: the comparisons that test it (the paper's own evidence first), the metric, the claimed
    direction and, for "not worse" claims, the margin."""

    id: str
    text: str
    source: str
    comparisons: tuple[tuple[str, str], ...]  # (model, reference), the paper's own evidence first
    metric: str
    expect: str  # "lower", "higher", "not worse (lower)" or "not worse (higher)"
    margin: float = 0.0  # for "not worse": how much worse still counts as matching
    paper_has: bool = True  # the paper itself reports the first comparison

    @property
    def good(self) -> float:
        """+1 when higher is the claimed direction, -1 when lower."""
        return -1.0 if "lower" in self.expect else 1.0


_FILTERED = (("HD-0.6-R", "HD-1.0-R"), ("HD-0.2-S", "HD-1.0-S"))
CLAIMS = [
    Claim(
        "C1",
        "The filtered heterogeneous mix (HD-0.2) lowers Bias against Base",
        "paper §6 headline; Table 1: HD-0.2-S 0.4436 vs Base 0.4585",
        (("HD-0.2-S", "Base"),),
        "Bias",
        "lower",
    ),
    Claim(
        "C2",
        "... while keeping Accuracy (no worse than Base by more than 0.05)",
        "paper §6 headline ('while keeping Accuracy'); Table 1: 0.9204 vs 0.9482",
        (("HD-0.2-S", "Base"),),
        "Accuracy",
        "not worse (higher)",
        0.05,
    ),
    Claim(
        "C3",
        "The HD mix lowers Bias against SFT on WinoGrande alone (S)",
        "paper §6 headline ('against every baseline'); Table 1: HD-0.2-S 0.4436 vs S 1.1721",
        (("HD-0.2-S", "S"),),
        "Bias",
        "lower",
    ),
    Claim(
        "C4",
        "A filtered subset matches or beats the full union on Bias (worse by at most 0.03)",
        "paper §1 ('a filtered subset can match or beat the full union'); Table 1: HD-0.2-S 0.4436, HD-1.0-S 0.4117",
        (("HD-0.2-S", "HD-1.0-S"),),
        "Bias",
        "not worse (lower)",
        0.03,
    ),
    Claim(
        "C5",
        "Filtered subsets beat the full union on Bias (Entropy)",
        "paper §6 headline; Table 1: HD-0.6-R 0.0010 vs HD-1.0-R 0.0068",
        _FILTERED,
        "Bias (Entropy)",
        "lower",
    ),
    Claim(
        "C6",
        "Filtered subsets beat the full union on Bias (Cluster)",
        "paper §6 headline; Table 1: HD-0.6-R 2.9472 vs HD-1.0-R 3.1570",
        _FILTERED,
        "Bias (Cluster)",
        "lower",
    ),
    Claim(
        "C7",
        "Filtered subsets beat the full union on Accuracy",
        "paper §6 headline; Table 1: HD-0.6-R 0.9646 vs HD-1.0-R 0.9583",
        _FILTERED,
        "Accuracy",
        "higher",
    ),
    Claim(
        "C8",
        "SFT+PPO beats SFT alone (lower Bias)",
        "paper §6 headline; Table 1: HD-0.2-R 0.4330 vs HD-0.2-S 0.4436",
        (("HD-0.2-R", "HD-0.2-S"),),
        "Bias",
        "lower",
    ),
    Claim(
        "C9",
        "The quality x diversity selection beats a random subset of the same size (lower Bias)",
        "implied by paper §3 (selection is the method); the paper ran no random control",
        (("HD-0.2-S", "RAND-0.2-S"),),
        "Bias",
        "lower",
        paper_has=False,
    ),
    Claim(
        "C10",
        "SFT on the HD mix raises Bias (Entropy) over Base",
        "paper §6, Table 1: HD-0.2-S 0.0580 vs Base 0.0010",
        (("HD-0.2-S", "Base"),),
        "Bias (Entropy)",
        "higher",
    ),
    Claim(
        "C11",
        "SFT on the HD mix raises Bias (Cluster) over Base",
        "paper §6, Table 1: HD-0.2-S 4.5856 vs Base 3.0393",
        (("HD-0.2-S", "Base"),),
        "Bias (Cluster)",
        "higher",
    ),
]


def verdict(p_holm: float, p_supported: float, p_contradicted: float, alpha: float = ALPHA) -> str:
    """The verdict from the claim's Holm-adjusted two-sided p-value (against 0, or against -margin for "not
    worse" claims) and its two one-sided p-values: the truth in the claim's direction (for "not worse": better
    than -margin), or in the opposite one (for "not worse": worse than -margin)."""
    if not p_holm < alpha:
        return "not distinguishable"
    return "supported" if p_supported <= p_contradicted else "contradicted"


def _find(groups: list[SeedGroup], claim: Claim):
    """(group, model, reference) of the first comparison of the claim the runs hold: within the group with the
    most seeds that has both models."""
    for model, ref in claim.comparisons:
        hits = [g for g in groups if arms_for(g, model, ref, metric=claim.metric)]
        if hits:
            return max(hits, key=lambda g: g.k), model, ref
    return None


COLUMNS = [
    "id",
    "claim",
    "source",
    "comparison",
    "tests",
    "metric",
    "expected",
    "verdict",
    "estimate",
    "lo",
    "hi",
    "adj_lo",
    "adj_hi",
    "p",
    "p_holm",
    "p_mc_se",
    "group",
    "conclusion",
    "detectable_80",
    "loso",
    "rl_stage",
]
MC_MARGIN = 3.0  # a Holm p within this many Monte Carlo standard errors of ALPHA is reported as at the threshold


def _seed_names(seeds) -> str:
    """`s50-s55` for a run of consecutive seeds, else `s50 s52 s57`."""
    s = sorted(int(x) for x in seeds)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"s{s[0]}-s{s[-1]}"
    return " ".join(f"s{x}" for x in s)


def _evidence(g: SeedGroup, r: dict) -> str:
    """The conclusion kind with the training seeds it rests on named."""
    kind = conclusion_kind(r["seeds"], r["items"])
    if g.k < 2 or "(" not in kind:
        return kind
    return kind.replace(" seeds x ", f" seeds: {_seed_names(g.seeds)} x ", 1)


def _drop_seed(arms, label) -> list:
    """The arms without the training seed `label` (in every trained arm that has it; Base unchanged)."""
    from .multiboot import Arm

    out = []
    for a in arms:
        keep = [] if a.fixed else [i for i, s in enumerate(a.seeds) if tuple(s)[1:] != tuple(label)[1:]]
        if a.fixed or len(keep) == a.k:
            out.append(a)
            continue
        den = a.den[keep] if a.den is not None else None
        out.append(Arm(a.values[keep], [a.seeds[i] for i in keep], den, a.fixed))
    return out


def _one_sided(c: Claim, r: dict) -> tuple[float, float]:
    """(p that the truth lies in the claimed direction, p that it lies in the opposite one)."""
    return (r["p_greater"], r["p_less"]) if c.good > 0 else (r["p_less"], r["p_greater"])


def _test_claim(c: Claim, groups: list[SeedGroup], seed: int) -> dict:
    """One claim's comparison (the first the runs hold), its interval and its two one-sided p-values (`_p_sup`:
    the truth in the claimed direction; `_p_con`: in the opposite one), or the row of an untested claim."""
    from .design import detectable_effect
    from .multiboot import terms

    base = {"id": c.id, "claim": c.text, "source": c.source, "metric": c.metric}
    base["expected"] = c.expect + (f", margin {c.margin:g}" if c.margin else "")
    hit = _find(groups, c)
    if hit is None:
        wanted = " or ".join(f"{m} − {r}" for m, r in c.comparisons)
        return {**base, "verdict": "not tested", "comparison": wanted, "conclusion": "not in these runs"}
    g, model, ref = hit
    null = -c.good * c.margin  # "not worse by more than m": the boundary is -m in the claimed direction
    arms = arms_for(g, model, ref, metric=c.metric)
    r = contrast(arms, [1.0, -1.0], null=null, seed=seed)
    p_sup, p_con = _one_sided(c, r)
    tests = "the paper's comparison" if c.paper_has else "the kit's own comparison (the paper ran none)"
    if (model, ref) != c.comparisons[0]:
        tests = f"not the paper's {c.comparisons[0][0]} − {c.comparisons[0][1]} (not in these runs)"
    loso = []  # (seed label, p, p_sup, p_con) with that seed left out
    if min(a.k for a in arms if not a.fixed) >= 3:
        for label in next(a.seeds for a in arms if not a.fixed):
            x = contrast(_drop_seed(arms, label), [1.0, -1.0], null=null, seed=seed)
            loso.append((label[1], min(1.0, 2 * min(_one_sided(c, x))), *_one_sided(c, x)))
    rl = None
    if model == "R" or model.endswith("-R"):  # a claim about an RL stage: did that stage raise its own reward?
        from .rl_gain import rl_gain, rl_gain_line

        variant = "wino" if model == "R" else model[:-2].lower()
        rl = (rl_gain(g, variant), rl_gain_line(g, variant))
    return {
        **base,
        "comparison": f"{model} − {ref}",
        "tests": tests,
        "rl_stage": rl[1] if rl else None,
        "_rl": rl[0] if rl else None,
        "estimate": r["estimate"],
        "lo": r["lo"],
        "hi": r["hi"],
        "p": min(1.0, 2 * min(p_sup, p_con)),
        "p_mc_se": 2 * r["p_mc_se"],
        "_p_sup": p_sup,
        "_p_con": p_con,
        "_pivot": r["pivot"],
        "_null": null,
        "_loso": loso,
        "group": g.label,
        "conclusion": _evidence(g, r),
        "detectable_80": detectable_effect(terms(arms, [1.0, -1.0])),
    }


def _qualified(v: str, conclusion: str) -> str:
    if v != "not distinguishable":
        if "exploratory" in conclusion:
            return v + " (exploratory)"
        if not conclusion.startswith("recipe"):
            return v + " (one trained model)"
    return v


def _finish(row: dict, p_adj: float) -> None:
    """The Holm-adjusted verdict of one tested claim, its Holm-consistent interval, the Monte Carlo flag and the
    leave-one-seed-out diagnostic (each left-out p scaled by the claim's own Holm factor)."""
    p = row["p"]
    factor = p_adj / p if p > 0 else 1.0
    v = verdict(p_adj, row.pop("_p_sup"), row.pop("_p_con"))
    piv = row.pop("_pivot")
    if piv is not None:
        level = ALPHA * p / p_adj if p_adj > 0 else ALPHA
        row["adj_lo"], row["adj_hi"] = piv.interval(1 - min(level, 1.0 - 1e-12))
    if abs(p_adj - ALPHA) <= MC_MARGIN * row["p_mc_se"] * factor:
        v += " (at the 0.05 threshold within Monte Carlo error)"
    loso = row.pop("_loso")
    changed = [f"s{s}" for s, pl, ps, pc in loso if _core(verdict(min(1.0, pl * factor), ps, pc)) != _core(v)]
    row["loso"] = ("changes without " + " ".join(changed)) if changed else ("stable" if loso else "n/a")
    rl = row.pop("_rl", None)
    v = _qualified(v, row["conclusion"])
    if rl is not None and not rl["raised"]:
        v += " (its RL stage did not raise its held-out reward)"
    row.update({"p_holm": float(p_adj), "verdict": v})


def _core(v: str) -> str:
    return str(v).split(" (")[0]


def score_claims(groups: list[SeedGroup], claims: list[Claim] = CLAIMS, seed: int = 0) -> pd.DataFrame:
    """Each claim with its verdict: the interval of (model - reference) unadjusted and Holm-consistent, the raw and
    Holm-adjusted p of the claim's test with its Monte Carlo error, the kind of evidence (with its seeds), whether it
    is the paper's own comparison, the smallest effect the design detects at 80 % power and the leave-one-seed-out
    diagnostic."""
    rows = [_test_claim(c, groups, seed) for c in claims]
    tested = [i for i, r in enumerate(rows) if "_p_sup" in r]
    for i, p_adj in zip(tested, holm([rows[i]["p"] for i in tested]) if tested else []):
        _finish(rows[i], p_adj)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)  # every column, also when no claim could be tested
