"""Did the RL stage raise its own reward, as a recipe? The held-out reward gain of an `-R` model's RL stage over
training seeds x held-out prompts (the Multi-Bootstrap of `multiboot`).

Each seed's RL stage judged the same held-out prompts (drawn by the data seed) before and after RL
(`training.rl_judge`: each prompt's mean reward over the sampled answers, `heldout_per_prompt`); the per-prompt gains
of the k seeds make a k x n table, and its recipe-level interval says whether the procedure "SFT, then this RL stage"
raises the reward it trains on, not whether one run did. Claim C8 ("SFT + PPO beats SFT alone") is about an RL stage
that should have done so: its row prints this figure beside it (`claims`).
"""

from __future__ import annotations

import json

import numpy as np

from .multiboot import Arm, contrast
from .recipes import conclusion_kind
from .runs import SeedGroup


def per_prompt_gains(group: SeedGroup, variant: str) -> tuple[np.ndarray, list] | None:
    """The k seeds x n prompts table of held-out reward gains of a variant's RL stage (None when a run lacks them, or
    the runs judged different prompt counts)."""
    rows, seeds = [], []
    for run in group.runs:
        algo = run.params.rl.algorithm
        path = run.dir / "models" / variant / algo / "manifest.json"
        if algo not in ("ppo", "rloo") or not path.is_file():
            return None
        per = (json.loads(path.read_text()).get("metrics") or {}).get("heldout_per_prompt")
        if not per:
            return None
        rows.append(np.asarray(per["after"], float) - np.asarray(per["before"], float))
        seeds.append((group.label, run.seed))
    if len({len(r) for r in rows}) != 1:
        return None
    return np.stack(rows), seeds


def rl_gain(group: SeedGroup, variant: str) -> dict | None:
    """The recipe-level held-out reward gain of a variant's RL stage (estimate, interval, p, the evidence kind), or None
    when the runs do not hold it."""
    table = per_prompt_gains(group, variant)
    if table is None:
        return None
    values, seeds = table
    r = contrast([Arm(values, seeds)], [1.0])
    return {
        "estimate": r["estimate"],
        "lo": r["lo"],
        "hi": r["hi"],
        "p": r["p"],
        "raised": bool(r["real"] and r["estimate"] > 0),
        "conclusion": conclusion_kind([len(seeds)], values.shape[1]).replace(" items", " held-out prompts"),
    }


def rl_gain_line(group: SeedGroup, variant: str) -> str | None:
    """`the RL stage raised its reward: +0.21 [+0.08, +0.35] (recipe, 5 seeds x 64 held-out prompts)`, or did not."""
    from ..common.stats import fmt_ci

    g = rl_gain(group, variant)
    if g is None:
        return None
    verb = "raised its held-out reward" if g["raised"] else "did not raise its held-out reward"
    return f"the RL stage {verb}: {fmt_ci(g['estimate'], g['lo'], g['hi'])} ({g['conclusion']})"
