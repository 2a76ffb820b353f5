"""The held-out pairs every reward model of a run is judged on, and the held-out prompts an RL run is judged on.

A variant's own held-out slice is small (hd-0.2 of the quickstart: ~30 pairs) and differs between variants, so
it cannot tell a 0.62 reward model from chance, nor one variant from another. The kit judges every reward model
of a run on one pool of pairs that no variant trains on, per source:

* OASST: the held-out trees of stage 1 (never in the union), paired by the **training label** (does the model
  learn what it is taught?); the human-`rank` pairs of the same trees are the evaluation's (notebook 05);
* WinoBias: pairs of the evaluation split (`evaluation.winobias_split`; training reads `dev`), drawn by twins;
* WinoGrande: rows of `evaluation.winogrande_split` (training reads a `train_*` split), drawn by twins;
* any other source: none (its reward model is judged on the variant's own held-out slice, `reward.eval_fraction`).

`reward.heldout_per_source` caps each source's share; the draw uses the data seed, so every variant and every
training seed of a run sees the same pairs. `rl_prompts` are the OASST held-out prompts (the RL stage's
before/after judgement), else the pool's prompts.
"""

from __future__ import annotations

import pandas as pd

from ..common.params import Params

COLUMNS = ["prompt_id", "group_id", "source", "prompt", "context", "chosen", "rejected"]
POOL_TYPES = ("oasst", "winobias", "winogrande")  # the source types `reward_pool` draws held-out pairs for


def _draw(rows: list[dict], n: int | None, seed: str) -> list[dict]:
    from ..data.union import draw_groups

    return draw_groups(rows, n, seed) if n and len(rows) > n else rows


def reward_pool(params: Params) -> pd.DataFrame:
    """The held-out pairs of every source that has them (see the module docstring), with `source` and
    `group_id`."""
    from .. import data as D

    cap, root, parts = params.reward.heldout_per_source, D.data_dir(params), []
    for spec in params.data.sources:
        drops, rows = D.Drops(), []
        if spec.type == "oasst":
            raw = D.load_oasst_rows(spec.split or "validation", root)
            same_label = spec.model_copy(update={"heldout_label": spec.label, "heldout_prefer": spec.prefer})
            _, rows, _ = D.parse_oasst(raw, same_label, params.data.language, params.data_seed, drops)
        elif spec.type == "winobias":
            split = params.evaluation.winobias_split
            pairs = (
                D.load_winobias_pairs(split, root, spec.name, drops)
                if root is not None
                else D.winobias_hf_pairs(split, spec.name, drops)
            )
            rows = D.winobias_to_rows(pairs, spec.name, drops)
        elif spec.type == "winogrande":
            raw = D.load_winogrande_rows(params.evaluation.winogrande_split, root)
            rows = D.parse_winogrande(raw, spec.name, drops)
        parts += _draw(rows, cap, f"{params.data_seed}:heldout:{spec.name}")
    df = pd.DataFrame(parts)
    return df[COLUMNS].reset_index(drop=True) if len(df) else pd.DataFrame(columns=COLUMNS)


def has_pool(params: Params) -> bool:
    """Whether every source of the run has a held-out pool (`reward_pool`: oasst, winobias, winogrande do)."""
    return all(s.type in POOL_TYPES for s in params.data.sources)


def judged_pool(params: Params, own=None) -> pd.DataFrame:
    """The held-out pairs a variant's reward model and RL stage are judged on: the run's pool (`reward_pool`), and
    `own` (the variant's held-out rows, a `datasets.Dataset` or None) of the sources the pool does not cover. One
    clear error naming `reward.eval_fraction` when that leaves nothing."""
    pool = reward_pool(params)
    if own is not None and len(own):
        own = own.to_pandas()
        own = own[~own["source"].isin(set(pool["source"]))]
        pool = pd.concat([pool, own[[c for c in COLUMNS if c in own]]], ignore_index=True)
    if not len(pool):
        from ..common.errors import ParamsError

        names = ", ".join(s.name for s in params.data.sources)
        raise ParamsError(
            f"reward.eval_fraction: the reward model would be judged on no pairs: the sources ({names}) have no "
            "held-out pool (only oasst, winobias and winogrande do) and `reward.eval_fraction` is 0. Set "
            "`reward.eval_fraction` (e.g. 0.2) to hold out that share of the variant by whole groups."
        )
    return pool


def rl_prompts(
    params: Params, n: int, own=None, sources: list[str] | None = None, half: str | None = None
) -> pd.DataFrame:
    """`n` held-out prompts (prompt, context, source) for the RL stage's before/after judgement, from `judged_pool`
    (`own`: the variant's held-out rows, kept out of RL training by `rl.rl_rows`), of `sources` (None: every source;
    OASST held-out trees first, instructions a policy answers, then the rest). The prompts are split by group into
    two disjoint halves, `tuning` (where RL settings are chosen) and `judged` (where the stage reports its gain);
    `half` picks one (default `rl.judge_on`)."""
    pool = judged_pool(params, own).drop_duplicates(["context", "prompt"])
    if sources is not None:
        pool = pool[pool["source"].isin(sources)]
    groups = sorted(set(pool["group_id"].astype(str)))
    import numpy as np

    rng = np.random.default_rng(params.data_seed)
    tuning = {g for g, u in zip(groups, rng.random(len(groups))) if u < 0.5}
    want = (half or params.rl.judge_on) == "tuning"
    pool = pool[pool["group_id"].astype(str).isin(tuning) == want]
    order = pool["source"].map(lambda s: 0 if _is_oasst(params, s) else 1)
    return pool.assign(_o=order).sort_values("_o", kind="stable").head(n)[["prompt", "context", "source"]]


def _is_oasst(params: Params, source: str) -> bool:
    return any(s.name == source and s.type == "oasst" for s in params.data.sources)
