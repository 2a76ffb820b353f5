"""Stage 4a: the reward model (TRL `RewardTrainer` + LoRA on the variant's (prompt, chosen, rejected) pairs,
initialised from the SFT model: base with the SFT adapter merged), its held-out pairwise accuracy with a
binomial p-value against chance, and the scoring helpers PPO, the evaluation and the probe share."""

from __future__ import annotations

import time

import numpy as np

from ..common.params import Params
from .stages import (
    begin_stage,
    last_checkpoint,
    preference_rows,
    save_adapter,
    split_rows,
    stage_callbacks,
    stage_dir,
    train_loss,
    write_manifest,
)


def _by_length(model, tok, texts: list[str], batch_size: int, max_length: int, fn) -> list:
    """`fn(enc)` (one row per text) over batches of similar length, right padding, in input order."""
    import torch

    out: list = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tok(
                [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=max_length
            ).to(model.device)
            with torch.no_grad():
                for i, row in zip(idx, fn(enc)):
                    out[i] = row
    finally:
        tok.padding_side = side
    return out


def reward_scores(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Scalar reward of each text (the score of the last non-pad token), batched by length."""
    rows = _by_length(
        model, tok, texts, batch_size, max_length, lambda enc: model(**enc).logits[:, 0].float().cpu().numpy()
    )
    return np.asarray(rows, dtype=np.float64)


def last_token_features(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """The hidden state a sequence-classification head reads: the backbone's output at the last
    token that is not the pad token (transformers' rule)."""
    import torch

    backbone = getattr(model, model.base_model_prefix)
    pad = model.config.pad_token_id

    def fn(enc):
        h = backbone(**enc).last_hidden_state
        ids = enc["input_ids"]
        last = (torch.arange(ids.shape[1], device=ids.device) * (ids != pad)).argmax(-1)
        return h[torch.arange(len(ids)), last].float().cpu().numpy()

    return np.stack(_by_length(model, tok, texts, batch_size, max_length, fn))


def pairwise_correct(model, tok, rows, batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Per pair: does the reward model score the chosen reply above the rejected one?"""
    chosen = reward_scores(model, tok, [r["prompt"] + r["chosen"] for r in rows], batch_size, max_length)
    rejected = reward_scores(model, tok, [r["prompt"] + r["rejected"] for r in rows], batch_size, max_length)
    return chosen > rejected


def pairwise_accuracy(model, tok, rows, batch_size: int = 16, max_length: int = 512) -> float:
    ok = pairwise_correct(model, tok, rows, batch_size, max_length)
    return float(np.mean(ok)) if len(ok) else float("nan")


def above_chance_p(correct: np.ndarray) -> float:
    """One-sided binomial test of a pairwise accuracy against chance (0.5)."""
    from scipy.stats import binomtest

    return float(binomtest(int(np.sum(correct)), len(correct), 0.5, alternative="greater").pvalue)


def accuracy_by_source(correct: np.ndarray, sources: list[str]) -> dict:
    return {s: float(np.mean([c for c, t in zip(correct, sources) if t == s])) for s in sorted(set(sources))}


def reward_split(params: Params, ds):
    """(train, held-out) pairs of the reward stage: the one split its training, its accuracy and
    `feature_probe` share."""
    r = params.reward
    return split_rows(ds, r.eval_fraction, params.data_seed, r.max_rows, r.eval_max_rows)


def reward_config(params: Params, output_dir):
    """The `RewardConfig` of the reward stage: `params.reward.args` over the run's defaults."""
    from ..common.configs import stage_config

    return stage_config(params, "reward", output_dir, save_steps=10, eval_strategy="no", dataset_num_proc=None)


def reward_trainer(params: Params, variant: str, rows, args, tok, callbacks=None):
    """`RewardTrainer` as the reward stage builds it: a score head on the SFT model of the variant (base with
    the SFT adapter merged, head seeded by the training seed), a LoRA adapter, the formatted pairs `rows`."""
    from trl import RewardTrainer

    from ..common.configs import lora_config
    from ..models.loading import load_reward_model

    model = load_reward_model(params, stage_dir(params, variant, "sft"))
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tok,
        peft_config=lora_config(params, "reward", "SEQ_CLS"),
        callbacks=callbacks,
    )


def train_reward(params: Params, variant: str, force: bool = False) -> dict:
    """The reward model of a variant on its training pairs, with its held-out pairwise accuracy (and a binomial
    p-value against chance); returns the stage manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    ds, key, out, done = begin_stage(params, variant, "reward", ("sft",), force)
    if done:
        return done
    started = time.time()
    tok = load_tokenizer(base_model_path(params))
    args = reward_config(params, out / "checkpoints")
    max_len = args.max_length or 512
    train, evald = reward_split(params, ds)
    train = preference_rows(train, tok, params, max_len)
    metrics = {"train_rows": len(train), "eval_rows": len(evald) if evald is not None else 0}
    bs = params.evaluation.batch_size
    sources = list(evald["source"]) if evald is not None else []
    evald = preference_rows(evald, tok, params, max_len) if evald is not None else None
    trainer = reward_trainer(params, variant, train, args, tok, stage_callbacks("reward model", variant, out))
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    metrics["train_loss"] = train_loss(trainer, result)
    if evald is not None:
        trainer.model.eval()
        correct = pairwise_correct(trainer.model, tok, evald, bs, max_len)
        metrics["eval_accuracy"] = float(np.mean(correct))
        metrics["eval_correct"], metrics["eval_pairs"] = int(np.sum(correct)), len(correct)
        metrics["eval_p_value"] = above_chance_p(correct)
        metrics["eval_accuracy_by_source"] = accuracy_by_source(correct, sources)
    save_adapter(trainer.model, out)
    return write_manifest(params, variant, "reward", key, trainer, metrics, started)
