"""Held-out OASST human pairs: formatted as the reward model sees its pairs; likelihood preference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...common.params import Params
from ...models.scoring import score_continuations
from ..registry import Benchmark, register
from . import item_ids


def oasst_pairs(tok, df: pd.DataFrame, params: Params) -> list[dict]:
    """The held-out human pairs formatted and fitted to `evaluation.max_length` exactly as the
    reward model and DPO see their training pairs (`sft.preference_rows`)."""
    from datasets import Dataset

    from ...training.stages import preference_rows

    if not len(df):
        return []
    ds = Dataset.from_pandas(df[["prompt", "context", "chosen", "rejected"]].reset_index(drop=True))
    return preference_rows(ds, tok, params, params.evaluation.max_length).to_list()


def oasst_gen_prompts(tok, df: pd.DataFrame, params: Params) -> list[str]:
    """The held-out prompts answered by every model (their end kept, so prompt + answer fits
    `evaluation.max_length`): shared by the generation and the reward-model judgements."""
    from ...models.loading import format_prompt
    from ...training.stages import fit_text

    ev = params.evaluation
    sub = df.head(ev.oasst_generate_max)
    return [
        fit_text(tok, format_prompt(tok, p, c, params), "", ev.max_length - ev.max_new_tokens)[0]
        for p, c in zip(sub["prompt"], sub["context"])
    ]


def oasst_likelihood_accuracy(model, tok, df: pd.DataFrame, params: Params, batch_size: int) -> dict:
    """Share of human pairs whose chosen reply has the higher mean per-token log-likelihood (with
    every pair's 0/1 in `items`)."""
    pairs = oasst_pairs(tok, df, params)
    jobs = [(r["prompt"], reply) for r in pairs for reply in (r["chosen"], r["rejected"])]
    s, n = score_continuations(model, tok, jobs, batch_size, return_counts=True)
    mean = s / np.maximum(n, 1)
    ok = (mean[0::2] > mean[1::2]).astype(float)
    ids = item_ids(f"{r['prompt']}\0{r['chosen']}\0{r['rejected']}" for r in pairs)
    return {
        "accuracy": float(np.mean(ok)) if len(ok) else None,
        "pairs": len(ok),
        "items": {"id": ids, "likelihood_pref_accuracy": ok.tolist()},
    }


def load_oasst_heldout(params: Params) -> pd.DataFrame:
    """The run's held-out OASST human pairs (stage 1's held-out trees), at most `evaluation.oasst_max_pairs`
    drawn with `evaluation.seed`."""
    path = params.run_dir / "data" / "oasst_heldout.parquet"
    df = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    if params.evaluation.oasst_max_pairs and len(df) > params.evaluation.oasst_max_pairs:
        df = df.sample(n=params.evaluation.oasst_max_pairs, random_state=params.eval_seed)
    return df.reset_index(drop=True)


def _score_oasst_ll(model, tok, df: pd.DataFrame, params: Params) -> dict:
    if not len(df):
        return {"accuracy": None, "pairs": 0, "items": {"id": [], "likelihood_pref_accuracy": []}}
    return oasst_likelihood_accuracy(model, tok, df, params, params.evaluation.batch_size)


def _score_oasst_gen(model, tok, df: pd.DataFrame, params: Params) -> dict:
    from ...models.scoring import generate_greedy

    ev = params.evaluation
    sub = df.head(ev.oasst_generate_max)
    prompts = oasst_gen_prompts(tok, sub, params)
    return {
        "prompts": sub["prompt"].tolist() if len(sub) else [],
        "prompt_ids": sub["prompt_id"].tolist() if len(sub) else [],
        "answers": generate_greedy(model, tok, prompts, ev.max_new_tokens, ev.generate_batch_size),
    }


def _ids(df: pd.DataFrame) -> list:
    return list(df.get("prompt_id", []))


register(
    Benchmark(
        "oasst_ll",
        load_oasst_heldout,
        _score_oasst_ll,
        title="OASST held-out human pairs",
        table="oasst_heldout",
        size="oasst_max_pairs",
        order=40,
        columns=(("likelihood_pref_accuracy", "likelihood_pref_accuracy", None),),
        row=lambda r: {"likelihood_pref_accuracy": r["accuracy"], "pairs": r["pairs"]},
        fingerprint=_ids,
    )
)
register(
    Benchmark(
        "oasst_gen",
        load_oasst_heldout,
        _score_oasst_gen,
        title="answers to held-out OASST prompts (judged by the reward models)",
        size="oasst_generate_max",
        order=41,
        fingerprint=_ids,
    )
)
