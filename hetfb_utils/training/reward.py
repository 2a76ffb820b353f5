"""Stage 4a: the reward model of a variant, and what it learned, per source (`reward_judge`): held-out accuracy beside
"the longer reply wins" and the shuffled-label control heads, on pairs no variant trains on (`heldout.reward_pool`).

`reward.method`: `head` (a score head fitted on the frozen backbone's features, `reward_head`), `lora` (TRL's
`RewardTrainer` + LoRA on the pairs), `head+lora` (the fitted head, then `RewardTrainer`). `reward.backbone`: the
reward model's backbone is the variant's SFT model (the paper's: `sft`) or the base model (`base`: its frozen features
are the same for every variant and training seed, so they are computed once and cached, `features_of`). Every score
goes through the one rule of `reward_rule` (the score at the end token that closes a reply).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.params import Params
from .reward_rule import last_token_features, reward_scores
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

__all__ = ["reward_scores", "last_token_features"]  # the rule, as the stages have always imported it from here


def reward_backbone(params: Params, variant: str) -> Path | None:
    """The adapter merged into the reward model's backbone: the variant's SFT adapter, or None (the base model)."""
    return stage_dir(params, variant, "sft") if params.reward.backbone == "sft" else None


def load_variant_reward(params: Params, variant: str, adapter: str | Path | None = None):
    """A variant's reward model as every later stage loads it: its backbone (`reward_backbone`) with the trained head
    (`adapter`: the reward stage's directory by default, or a control head's, e.g. `<reward>/shuffled`)."""
    from ..models.loading import load_reward_model

    return load_reward_model(params, reward_backbone(params, variant), adapter or stage_dir(params, variant, "reward"))


def _backbone_key(params: Params, variant: str) -> str:
    """What the frozen features depend on besides the text: the backbone (the base checkpoint, or the SFT adapter's
    weights), the dtype, and the code that computes them (`version.code_version("features")`)."""
    import hashlib

    from ..common.version import code_version
    from ..models.loading import base_model_path

    parts = [base_model_path(params), params.model.dtype, code_version("features")]
    sft = reward_backbone(params, variant)
    if sft is not None:
        weights = sorted(Path(sft).glob("adapter_model.*"))
        parts += [hashlib.sha1(w.read_bytes()).hexdigest() for w in weights]
    return "|".join(map(str, parts))


def features_of(params: Params, variant: str, tok, texts: list[str], max_length: int, model=None) -> np.ndarray:
    """The frozen backbone's features of `texts` under the rule (`reward_rule.closed_features`), cached by backbone,
    code, max length and text in `<cache_dir>/features/`: with `reward.backbone: base` every variant and training
    seed of a run, and every run, shares them. `model`: the backbone already loaded (else loaded when needed)."""
    from ..common.vector_cache import VectorCache, text_key

    key = _backbone_key(params, variant)
    store = VectorCache(params.cache_path / "features" / f"{text_key(key, str(max_length))[:16]}.npz")
    holder = {"model": model}

    def compute(missing: list[str]) -> np.ndarray:
        from ..models.loading import load_reward_model

        if holder["model"] is None:
            holder["model"] = load_reward_model(params, reward_backbone(params, variant))
        return last_token_features(holder["model"], tok, missing, params.evaluation.batch_size, max_length)

    return store.lookup([text_key(key, str(max_length), t) for t in texts], texts, compute)


def pair_texts(rows) -> tuple[list[str], list[str]]:
    """(prompt + chosen, prompt + rejected) of formatted pairs."""
    rows = list(rows)
    return [r["prompt"] + r["chosen"] for r in rows], [r["prompt"] + r["rejected"] for r in rows]


def pair_features(model, tok, rows, batch_size: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of (prompt + chosen) and (prompt + rejected) of formatted pairs, in one batched pass."""
    c, r = pair_texts(rows)
    f = last_token_features(model, tok, c + r, batch_size, max_length)
    return f[: len(c)], f[len(c) :]


def pairwise_correct(model, tok, rows, batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Per pair: does the reward model score the chosen reply above the rejected one?"""
    c, r = pair_texts(rows)
    s = reward_scores(model, tok, c + r, batch_size, max_length)
    return s[: len(c)] > s[len(c) :]


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
    """`RewardTrainer` as the reward stage builds it: the variant's reward backbone with a score head (seeded by the
    training seed) and a LoRA adapter, on the formatted pairs `rows`. `model`: a reward model already wrapped with
    its adapter (the fitted head of `head+lora`), trained as it is."""
    from trl import RewardTrainer

    from ..common.configs import lora_config
    from ..models.loading import load_reward_model

    return RewardTrainer(
        model=model if model is not None else load_reward_model(params, reward_backbone(params, variant)),
        args=args,
        train_dataset=rows,
        processing_class=tok,
        peft_config=None if model is not None else lora_config(params, "reward", "SEQ_CLS"),
        callbacks=callbacks,
    )


@dataclasses.dataclass
class RewardData:
    """What a reward stage trains on and is judged on: the variant's formatted training pairs and their groups, the
    held-out pairs (formatted, and as a frame with `source`, `group_id` and the raw replies), the max length."""

    train: object  # datasets.Dataset of (prompt, chosen, rejected), formatted
    groups: list
    judged: list[dict]
    judged_frame: pd.DataFrame
    max_length: int

    @property
    def sources(self) -> list[str]:
        return list(self.judged_frame["source"])


def reward_data(params: Params, run: StageRun, tok) -> RewardData:
    """The training pairs of a begun reward stage (the variant, less its own held-out slice) and the pairs it is
    judged on (`judged_pairs`), formatted as the reward model reads them."""
    from datasets import Dataset

    max_len = reward_config(params, run.out / "checkpoints").max_length or 512
    train, own = reward_split(params, run.ds)
    judged = judged_pairs(params, own).reset_index(drop=True)
    return RewardData(
        train=preference_rows(train, tok, params, max_len),
        groups=list(train["group_id"]) if "group_id" in train.column_names else list(range(len(train))),
        judged=preference_rows(Dataset.from_pandas(judged, preserve_index=False), tok, params, max_len).to_list(),
        judged_frame=judged,
        max_length=max_len,
    )


def frozen_pair_features(params: Params, variant: str, tok, rows, max_length: int, model=None):
    """(chosen, rejected) features of formatted pairs under the variant's frozen reward backbone (`features_of`)."""
    c, r = pair_texts(rows)
    f = features_of(params, variant, tok, c + r, max_length, model)
    return f[: len(c)], f[len(c) :]


def finish_reward(params: Params, run: StageRun, data: RewardData, tok, model, head=None, head_info=None, trainer=None):
    """After the reward model learned (`head`: a score head fitted on the frozen features, `head_info` its fit;
    `trainer`: a `RewardTrainer` that trained `model`): the shuffled-label control heads (on the same frozen
    features, `reward.shuffled_heads`), the judgement per source (`reward_judge.judge_reward`), the adapters (the
    first control head's in `shuffled/`, what the RL control trains against) and the manifest."""
    from ..common.configs import lora_config
    from ..models.loading import load_reward_model
    from .reward_head import fit_head, install_head, shuffled_heads
    from .reward_judge import judge_reward, learned_sources

    frozen = model if head is not None else None  # the head's backbone is the frozen one (a trained LoRA is not)
    fc, fr = frozen_pair_features(params, run.variant, tok, data.train, data.max_length, frozen)
    jc, jr = frozen_pair_features(params, run.variant, tok, data.judged, data.max_length, frozen)
    if head is not None:
        chosen, rejected = jc @ head, jr @ head
        model = install_head(model, head, lora_config(params, "reward", "SEQ_CLS"))
    else:
        model.eval()
        c, r = pair_texts(data.judged)
        s = reward_scores(model, tok, c + r, params.evaluation.batch_size, data.max_length)
        chosen, rejected = s[: len(c)], s[len(c) :]
    c_ctl = (head_info or {}).get("C") or fit_head(fc, fr, data.groups, params.training_seed)[1]["C"]
    controls = shuffled_heads(fc, fr, c_ctl, params.training_seed, params.reward.shuffled_heads)
    sc = np.stack([jc @ w for w in controls]) if controls else np.zeros((0, len(jc)))
    sr = np.stack([jr @ w for w in controls]) if controls else np.zeros((0, len(jc)))
    judgement = judge_reward(chosen, rejected, sc, sr, data.judged_frame, params.eval_seed)
    m = run.metrics
    m.update({"method": params.reward.method, "backbone": params.reward.backbone, "train_rows": len(data.train)})
    m.update({"eval_pairs": len(data.judged), "judgement": judgement, "learned_sources": learned_sources(judgement)})
    if head_info is not None:  # the cross-validation curve goes to the log history (the stage's figure)
        m.update({"head_C": head_info["C"], "head_cv_accuracy": head_info["cv_accuracy"], "_log": head_info["curve"]})
    if trainer is not None:
        m["train_loss"] = train_loss(trainer, None)
    if controls:
        control = load_reward_model(params, reward_backbone(params, run.variant))
        save_adapter(install_head(control, controls[0], lora_config(params, "reward", "SEQ_CLS")), run.out / "shuffled")
    save_adapter(model, run.out)
    return finish_stage(params, run, trainer)


def head_fit(params: Params, run: StageRun, tok, data: RewardData):
    """The score head's training (`reward.method: head`, and the start of `head+lora`): the frozen features of the
    training pairs and the grouped, cross-validated logistic regression on their difference. Returns (the reward
    model it goes into, the head, the fit's information)."""
    from ..models.loading import load_reward_model
    from .reward_head import fit_head

    model = load_reward_model(params, reward_backbone(params, run.variant))
    fc, fr = frozen_pair_features(params, run.variant, tok, data.train, data.max_length, model)
    head, info = fit_head(fc, fr, data.groups, params.training_seed)
    return model, head, info


def reward_stage_trainer(params: Params, run: StageRun, tok, data: RewardData):
    """The `RewardTrainer` of a begun reward stage (`reward.method: lora`, or `head+lora`: it starts from the fitted
    head): the training pairs, the stage's `RewardConfig`, its callbacks. Returns (trainer, the head fit or None)."""
    from ..common.configs import lora_config
    from .reward_head import install_head

    info, model = None, None
    if params.reward.method == "head+lora":
        model, head, info = head_fit(params, run, tok, data)
        model = install_head(model, head, lora_config(params, "reward", "SEQ_CLS"))
    args = reward_config(params, run.out / "checkpoints")
    callbacks = stage_callbacks("reward model", run.variant, run.out)
    return reward_trainer(params, run.variant, data.train, args, tok, callbacks, model), info


def train_reward(params: Params, variant: str, force: bool = False) -> dict:
    """The reward model of a variant (`reward.method`), judged per source beside the length baseline and the
    shuffled-label control heads; returns the stage manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    run = begin_stage(params, variant, "reward", ("sft",), force)
    if run.done:
        return run.done
    tok = load_tokenizer(base_model_path(params))
    data = reward_data(params, run, tok)
    if params.reward.method == "head":
        model, head, info = head_fit(params, run, tok, data)
        return finish_reward(params, run, data, tok, model, head=head, head_info=info)
    trainer, info = reward_stage_trainer(params, run, tok, data)
    trainer.train(resume_from_checkpoint=last_checkpoint(run.out))
    return finish_reward(params, run, data, tok, trainer.model, head_info=info, trainer=trainer)
