"""What a reward model learned, per source: held-out pairs judged by the model, by "the longer reply wins" and by the
shuffled-label control heads, each the same way.

Every judge scores a pair 1 when it ranks the chosen reply above the rejected one, 0 when below and 0.5 on a tie (the
length baseline ties on replies of the same length; before, its ties were left out while the model was scored on
every pair, which flattered the baseline). Pairs of one group (an OASST tree, a WinoBias / WinoGrande twin pair) are
not independent, so every interval and test resamples whole groups. Per source:

* **accuracy** of the reward model, with its 95 % interval (bootstrap over groups of the ratio correct / pairs);
* **beats chance**: the one-sided sign-flip test of (correct - 0.5) summed per group, Holm-adjusted across sources;
* **beats length**: reward model minus the longer-reply baseline on the same pairs (paired, per group), its interval
  and two-sided p;
* **shuffled-label control**: the mean accuracy of `reward.shuffled_heads` heads fitted on randomly flipped labels,
  with its 95 % interval over the same groups of pairs as the model's (each pair's correctness averaged over the
  heads) and the 2.5-97.5 % range of the heads themselves: one such head's
  accuracy is not a draw around 0.5 with a binomial spread (a dominant feature direction, e.g. length, puts a random
  head anywhere in that range), so the control is their mean, and it must sit at 0.5 (`control_at_chance`: else the
  procedure leaks the label); **beats shuffled**: the share of shuffled heads at or above the model (a permutation
  p-value, (1 + ties or better) / (1 + heads)), the stricter question "better than a head fitted on no signal";
* **learned**: beats chance, with its control at chance. The RL stage trains on the prompts of the sources the reward
  model learned (`rl.prompt_sources: learned`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..common.stats import holm, interval, paired, seed_for

ALPHA = 0.05


def tie_half(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 0.5 where equal, 0 below: one judge's per-pair correctness, ties counted as half."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def _by_group(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of values, count) per group, groups in order of first appearance."""
    codes, first = pd.factorize(pd.Series(groups, dtype=str))
    sums = np.bincount(codes, weights=values, minlength=len(first))
    return sums, np.bincount(codes, minlength=len(first)).astype(np.float64)


def _above_chance_p(correct: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """One-sided p of "accuracy > 0.5": a sign-flip permutation test of the per-group sums of (correct - 0.5)."""
    from scipy.stats import permutation_test

    s, _ = _by_group(correct - 0.5, groups)
    if len(s) < 2 or not np.any(s):
        return 1.0
    return float(
        permutation_test(
            (s,),
            lambda x, axis=-1: np.sum(x, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=4999,
            alternative="greater",
            rng=np.random.default_rng(seed),
        ).pvalue
    )


def judge_source(model: np.ndarray, length: np.ndarray, shuffled: np.ndarray, groups: np.ndarray, seed: int) -> dict:
    """One source's judgement from the per-pair correctness of the model, the length baseline and each shuffled head
    (`shuffled`: [heads, pairs]); see the module docstring."""
    sums, counts = _by_group(model, groups)
    acc, lo, hi = interval(sums, counts, seed=seed)
    lsums, _ = _by_group(length, groups)
    lacc, llo, lhi = interval(lsums, counts, seed=seed + 1)
    d = paired(sums, lsums, counts, counts, seed=seed + 2)
    out = {
        "pairs": int(len(model)),
        "groups": int(len(counts)),
        "accuracy": acc,
        "lo": lo,
        "hi": hi,
        "chance_p": _above_chance_p(model, groups, seed + 3),
        "length": lacc,
        "length_lo": llo,
        "length_hi": lhi,
        "vs_length": d["delta"],
        "vs_length_lo": d["delta_lo"],
        "vs_length_hi": d["delta_hi"],
        "vs_length_p": d["p"],
    }
    if len(shuffled):
        accs = shuffled.mean(1)
        ssums, _ = _by_group(shuffled.mean(0), groups)  # each pair's correctness averaged over the heads
        mean, mlo, mhi = interval(ssums, counts, seed=seed + 4)  # over groups, as the model's own interval
        out.update(
            {
                "shuffled": mean,
                "shuffled_lo": mlo,
                "shuffled_hi": mhi,
                "shuffled_spread_lo": float(np.quantile(accs, 0.025)),
                "shuffled_spread_hi": float(np.quantile(accs, 0.975)),
                "shuffled_heads": int(len(accs)),
                "vs_shuffled_p": float((1 + np.sum(accs >= model.mean())) / (1 + len(accs))),
            }
        )
    return out


def judge_reward(
    chosen: np.ndarray,
    rejected: np.ndarray,
    shuffled_chosen: np.ndarray,
    shuffled_rejected: np.ndarray,
    pairs: pd.DataFrame,
    seed: int,
) -> dict[str, dict]:
    """Per source (and "all"): the judgement of a reward model from its scores of the held-out pairs' chosen and
    rejected replies, the shuffled heads' scores ([heads, pairs]) and the pairs (`source`, `group_id`, `chosen`,
    `rejected` texts: the length baseline counts characters). Verdicts `beats_chance` (Holm across the sources),
    `beats_length`, `beats_shuffled` and `learned` per source."""
    model = tie_half(chosen, rejected)
    length = tie_half(pairs["chosen"].str.len().to_numpy(), pairs["rejected"].str.len().to_numpy())
    shuffled = tie_half(shuffled_chosen, shuffled_rejected) if len(shuffled_chosen) else np.zeros((0, len(pairs)))
    groups = (pairs["source"].astype(str) + "\x00" + pairs["group_id"].astype(str)).to_numpy()
    sources = pairs["source"].astype(str).to_numpy()
    out = {}
    for s in sorted(set(sources)):
        m = sources == s
        out[s] = judge_source(model[m], length[m], shuffled[:, m], groups[m], seed_for(seed, "reward-judge", s))
    names = sorted(out)
    for s, p in zip(names, holm([out[s]["chance_p"] for s in names])):
        r = out[s]
        r["chance_p_holm"] = float(p)
        r["beats_chance"] = bool(p < ALPHA and r["accuracy"] > 0.5)
        r["beats_length"] = bool(r["vs_length_lo"] > 0)
        r["beats_shuffled"] = bool(r.get("vs_shuffled_p", 0.0) < ALPHA)
        r["control_at_chance"] = bool(r.get("shuffled_lo", 0.5) <= 0.5 <= r.get("shuffled_hi", 0.5))
        r["learned"] = r["beats_chance"] and r["control_at_chance"]
    out["all"] = judge_source(model, length, shuffled, groups, seed_for(seed, "reward-judge", "all"))
    return out


def learned_sources(judgement: dict[str, dict]) -> list[str]:
    """The sources a reward model learned (beats chance, with its shuffled-label control at chance)."""
    return [s for s, r in judgement.items() if s != "all" and r.get("learned")]


def judgement_frame(judgement: dict[str, dict]) -> pd.DataFrame:
    """The judgement as a table: one row per source and judge (reward model, longer reply wins, shuffled-label
    heads), with accuracy, interval, pairs and the verdicts."""
    rows = []
    for s, r in judgement.items():
        base = {"source": s, "pairs": r["pairs"], "groups": r["groups"]}
        rows.append({**base, "judge": "reward model", "accuracy": r["accuracy"], "lo": r["lo"], "hi": r["hi"]})
        rows.append(
            {**base, "judge": "longer reply wins", "accuracy": r["length"], "lo": r["length_lo"], "hi": r["length_hi"]}
        )
        if "shuffled" in r:
            rows.append(
                {
                    **base,
                    "judge": "shuffled-label heads",
                    "accuracy": r["shuffled"],
                    "lo": r["shuffled_lo"],
                    "hi": r["shuffled_hi"],
                }
            )
    return pd.DataFrame(rows)


def verdict_frame(judgement: dict[str, dict]) -> pd.DataFrame:
    """Per source: what the reward model learned (beats chance, Holm p; beats length, the paired difference; beats
    the shuffled heads, permutation p; learned)."""
    rows = []
    for s, r in judgement.items():
        if s == "all":
            continue
        rows.append(
            {
                "source": s,
                "accuracy": r["accuracy"],
                "beats chance": r["beats_chance"],
                "p (Holm)": r["chance_p_holm"],
                "minus length": r["vs_length"],
                "lo": r["vs_length_lo"],
                "hi": r["vs_length_hi"],
                "beats length": r["beats_length"],
                "control at chance": r["control_at_chance"],
                "beats shuffled": r["beats_shuffled"],
                "p (permutation)": r.get("vs_shuffled_p"),
                "learned": r["learned"],
            }
        )
    return pd.DataFrame(rows)
