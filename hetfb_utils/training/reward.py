"""Stage 4a: the reward model of a variant, initialised from its SFT model (base with the SFT adapter merged), and
what it learned: held-out pairwise accuracy per source with its Wilson interval, beside "the longer reply wins"
and a shuffled-label control, on pairs no variant trains on (`heldout.reward_pool`).

`reward.method`: `head` (a score head fitted on the frozen SFT features, `reward_head`), `lora` (TRL's
`RewardTrainer` + LoRA on the pairs), `head+lora` (the fitted head, then `RewardTrainer`). The scoring helpers
here (a text's reward, the features the head reads) are shared by PPO, RLOO, the evaluation and the probe; a
scored text ends with the end-of-sequence token, as `RewardTrainer` appends it to every reply it trains on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..common.params import Params
from ..common.stats import proportion
from .stages import (
    StageRun,
    begin_stage,
    finish_stage,
    last_checkpoint,
    preference_rows,
    save_adapter,
    split_rows,
    stage_callbacks,
    stage_dir,
    train_loss,
)


def _with_eos(tok, texts: list[str]) -> list[str]:
    eos = tok.eos_token or ""
    return [t if not eos or t.endswith(eos) else t + eos for t in texts]


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
    """Scalar reward of each text (prompt + reply; the end-of-sequence token appended when missing): the score
    of the last non-pad token, batched by length."""
    rows = _by_length(
        model,
        tok,
        _with_eos(tok, texts),
        batch_size,
        max_length,
        lambda enc: model(**enc).logits[:, 0].float().cpu().numpy(),
    )
    return np.asarray(rows, dtype=np.float64)


def last_token_features(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """The hidden state a sequence-classification head reads: the backbone's output at the last token that is
    not the pad token (transformers' rule), for each text with its end-of-sequence token."""
    import torch

    backbone = getattr(model, model.base_model_prefix)
    pad = model.config.pad_token_id

    def fn(enc):
        h = backbone(**enc).last_hidden_state
        ids = enc["input_ids"]
        last = (torch.arange(ids.shape[1], device=ids.device) * (ids != pad)).argmax(-1)
        return h[torch.arange(len(ids)), last].float().cpu().numpy()

    return np.stack(_by_length(model, tok, _with_eos(tok, texts), batch_size, max_length, fn))


def pair_features(model, tok, rows, batch_size: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of (prompt + chosen) and (prompt + rejected) of formatted pairs, in one batched pass."""
    texts = [r["prompt"] + r["chosen"] for r in rows] + [r["prompt"] + r["rejected"] for r in rows]
    f = last_token_features(model, tok, texts, batch_size, max_length)
    return f[: len(rows)], f[len(rows) :]


def pairwise_correct(model, tok, rows, batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Per pair: does the reward model score the chosen reply above the rejected one?"""
    texts = [r["prompt"] + r["chosen"] for r in rows] + [r["prompt"] + r["rejected"] for r in rows]
    s = reward_scores(model, tok, texts, batch_size, max_length)
    return s[: len(rows)] > s[len(rows) :]


def above_chance_p(correct: np.ndarray) -> float:
    """One-sided binomial test of a pairwise accuracy against chance (0.5)."""
    from scipy.stats import binomtest

    return float(binomtest(int(np.sum(correct)), len(correct), 0.5, alternative="greater").pvalue)


def accuracy_by_source(correct: np.ndarray, sources: list[str]) -> dict:
    """Accuracy per source of per-pair correctness."""
    return {s: float(np.mean([c for c, t in zip(correct, sources) if t == s])) for s in sorted(set(sources))}


def reward_split(params: Params, ds):
    """(train, the variant's own held-out slice or None): `reward.eval_fraction` of the variant by whole groups."""
    r = params.reward
    return split_rows(ds, r.eval_fraction, params.data_seed, r.max_rows, r.eval_max_rows)


def judged_pairs(params: Params, own_heldout) -> pd.DataFrame:
    """The pairs a reward model is judged on: the run's held-out pool, and the variant's own held-out rows of
    sources the pool does not cover (`heldout.judged_pool`)."""
    from .heldout import judged_pool

    return judged_pool(params, own_heldout)


def reward_config(params: Params, output_dir):
    """The `RewardConfig` of the reward stage: `params.reward.args` over the run's defaults."""
    from ..common.configs import stage_config

    return stage_config(params, "reward", output_dir, save_steps=10, eval_strategy="no", dataset_num_proc=None)


def reward_trainer(params: Params, variant: str, rows, args, tok, callbacks=None, model=None):
    """`RewardTrainer` as the reward stage builds it: the SFT model of the variant with a score head (seeded by
    the training seed) and a LoRA adapter, on the formatted pairs `rows`. `model`: a reward model already wrapped
    with its adapter (the fitted head of `head+lora`), trained as it is."""
    from trl import RewardTrainer

    from ..common.configs import lora_config
    from ..models.loading import load_reward_model

    return RewardTrainer(
        model=model if model is not None else load_reward_model(params, stage_dir(params, variant, "sft")),
        args=args,
        train_dataset=rows,
        processing_class=tok,
        peft_config=None if model is not None else lora_config(params, "reward", "SEQ_CLS"),
        callbacks=callbacks,
    )


def judgement(correct: np.ndarray, sources: list[str], prefix: str) -> dict:
    """Accuracy with its Wilson interval, overall and per source, as flat metrics `<prefix>...`."""
    out = {}
    for name, mask in [("", np.ones(len(correct), bool))] + [
        (f"_{s}", np.array([t == s for t in sources])) for s in sorted(set(sources))
    ]:
        ci = proportion(int(np.sum(correct[mask])), int(mask.sum()))
        out.update({f"{prefix}{name}": ci["value"], f"{prefix}{name}_lo": ci["lo"], f"{prefix}{name}_hi": ci["hi"]})
        out[f"{prefix}{name}_pairs"] = ci["n"]
    return out


def length_correct(rows) -> tuple[np.ndarray, np.ndarray]:
    """(longer reply wins?, untied?) per pair."""
    lc = np.array([len(r["chosen"]) for r in rows])
    lr = np.array([len(r["rejected"]) for r in rows])
    return lc > lr, lc != lr


@dataclasses.dataclass
class RewardData:
    """What a reward stage trains on and is judged on: the variant's formatted training pairs and their groups,
    the held-out pairs (formatted) and their sources, the stage's max length."""

    train: object  # datasets.Dataset of (prompt, chosen, rejected), formatted
    groups: list
    judged: list[dict]
    sources: list[str]
    max_length: int


def reward_data(params: Params, run: StageRun, tok) -> RewardData:
    """The training pairs of a begun reward stage (the variant, less its own held-out slice) and the pairs it is
    judged on (`judged_pairs`), formatted as the reward model reads them."""
    from datasets import Dataset

    max_len = reward_config(params, run.out / "checkpoints").max_length or 512
    train, own = reward_split(params, run.ds)
    judged = judged_pairs(params, own)
    return RewardData(
        train=preference_rows(train, tok, params, max_len),
        groups=list(train["group_id"]) if "group_id" in train.column_names else list(range(len(train))),
        judged=preference_rows(Dataset.from_pandas(judged, preserve_index=False), tok, params, max_len).to_list(),
        sources=list(judged["source"]),
        max_length=max_len,
    )


def finish_reward(
    params: Params, run: StageRun, data: RewardData, tok, model, head=None, head_info=None, trainer=None, features=None
):
    """After the reward model learned (`head`: a score head fitted on `model`'s frozen features, `head_info` its
    fit; `trainer`: a `RewardTrainer` that trained `model`): its held-out accuracy per source beside the length
    baseline and the shuffled-label control (a head fitted on flipped labels of the same frozen features,
    `reward.shuffled_control`), the adapters (the control's in `shuffled/`) and the manifest."""
    from ..common.configs import lora_config
    from ..models.loading import load_reward_model
    from .reward_head import fit_head, install_head

    bs = params.evaluation.batch_size
    frozen = model if head is not None else load_reward_model(params, stage_dir(params, run.variant, "sft"))
    jc, jr = pair_features(frozen, tok, data.judged, bs, data.max_length)
    if head is not None:
        correct = (jc - jr) @ head > 0
        model = install_head(model, head, lora_config(params, "reward", "SEQ_CLS"))
    else:
        model.eval()
        correct = pairwise_correct(model, tok, data.judged, bs, data.max_length)
    m = run.metrics
    m.update({"method": params.reward.method, "train_rows": len(data.train), "eval_pairs": len(data.judged)})
    if head_info is not None:  # the cross-validation curve goes to the log history (the stage's figure)
        m.update({"head_C": head_info["C"], "head_cv_accuracy": head_info["cv_accuracy"], "_log": head_info["curve"]})
    if trainer is not None:
        m["train_loss"] = train_loss(trainer, None)
    m.update(judgement(correct, data.sources, "eval_accuracy"))
    m["eval_p_value"] = above_chance_p(correct)
    longer, untied = length_correct(data.judged)
    m.update(judgement(longer[untied], [s for s, u in zip(data.sources, untied) if u], "length_baseline"))
    if params.reward.shuffled_control:
        fc, fr = features if features is not None else pair_features(frozen, tok, data.train, bs, data.max_length)
        shuffled, _ = fit_head(fc - fr, data.groups, params.training_seed, shuffle=True)
        m.update(judgement((jc - jr) @ shuffled > 0, data.sources, "shuffled_control"))
        control = load_reward_model(params, stage_dir(params, run.variant, "sft"))
        save_adapter(install_head(control, shuffled, lora_config(params, "reward", "SEQ_CLS")), run.out / "shuffled")
    save_adapter(model, run.out)
    return finish_stage(params, run, trainer)


def train_reward(params: Params, variant: str, force: bool = False) -> dict:
    """The reward model of a variant (`reward.method`), judged on held-out pairs beside the length baseline and
    the shuffled-label control; returns the stage manifest."""
    from ..common.configs import lora_config
    from ..models.loading import base_model_path, load_reward_model, load_tokenizer
    from .reward_head import fit_head, install_head

    run = begin_stage(params, variant, "reward", ("sft",), force)
    if run.done:
        return run.done
    tok = load_tokenizer(base_model_path(params))
    data = reward_data(params, run, tok)
    model = load_reward_model(params, stage_dir(params, variant, "sft"))
    method, head, info, features = params.reward.method, None, None, None
    if method in ("head", "head+lora"):
        features = pair_features(model, tok, data.train, params.evaluation.batch_size, data.max_length)
        head, info = fit_head(features[0] - features[1], data.groups, params.training_seed)
    if method == "head":
        return finish_reward(params, run, data, tok, model, head=head, head_info=info, features=features)
    if head is not None:  # head+lora: RewardTrainer starts from the fitted head
        model = install_head(model, head, lora_config(params, "reward", "SEQ_CLS"))
    args = reward_config(params, run.out / "checkpoints")
    callbacks = stage_callbacks("reward model", variant, run.out)
    trainer = reward_trainer(params, variant, data.train, args, tok, callbacks, model if head is not None else None)
    trainer.train(resume_from_checkpoint=last_checkpoint(run.out))
    info = info if head is not None else None
    return finish_reward(params, run, data, tok, trainer.model, head_info=info, trainer=trainer, features=features)
