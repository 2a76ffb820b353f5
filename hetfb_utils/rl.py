"""Stage 4: reward model and PPO (the paper's `-R` models), or DPO as a modern alternative.

* reward model: TRL `RewardTrainer` + LoRA on the variant's (prompt, chosen, rejected) pairs,
  initialised from the SFT model (base with the SFT adapter merged), held-out pairwise accuracy;
* PPO: `trl.experimental.ppo.PPOTrainer` with a LoRA policy on top of the SFT model (reference =
  adapters disabled), value model initialised from the reward model, prompts of the variant;
* DPO: TRL `DPOTrainer` + LoRA on the same pairs, from the SFT model (`rl.algorithm: dpo`).

An `-R` model is the base with the SFT adapter merged and the PPO (or DPO) adapter on top.
"""
from __future__ import annotations

import copy
import logging
import time
import warnings

import numpy as np

from .params import Params
from .sft import (begin_stage, last_checkpoint, preference_rows, require, save_adapter, split_rows,
                  stage_callbacks, stage_dir, train_loss, write_manifest)
from .stats import proportion


class _GenerationConfigNotice(logging.Filter):
    """trl 1.12's PPOTrainer calls `generate` with a `generation_config` *and* `output_scores` /
    `return_dict_in_generate`, which transformers 5.23 logs as deprecated once per process. The call
    is inside the library; exactly that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


logging.getLogger("transformers.generation.utils").addFilter(_GenerationConfigNotice())


def _by_length(model, tok, texts: list[str], batch_size: int, max_length: int, fn) -> list:
    """`fn(enc)` (one row per text) over batches of similar length, right padding, in input order."""
    import torch
    out: list = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length).to(model.device)
            with torch.no_grad():
                for i, row in zip(idx, fn(enc)):
                    out[i] = row
    finally:
        tok.padding_side = side
    return out


def reward_scores(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Scalar reward of each text (the score of the last non-pad token), batched by length."""
    rows = _by_length(model, tok, texts, batch_size, max_length,
                      lambda enc: model(**enc).logits[:, 0].float().cpu().numpy())
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


# --------------------------------------------------------------------------- reward model
def reward_split(params: Params, ds):
    """(train, held-out) pairs of the reward stage: the one split its training, its accuracy and
    `feature_probe` share."""
    r = params.reward
    return split_rows(ds, r.eval_fraction, params.seed, r.max_rows, r.eval_max_rows)


def train_reward(params: Params, variant: str, force: bool = False) -> dict:
    from trl import RewardTrainer

    from .models import base_model_path, load_reward_model, load_tokenizer
    from .params import lora_config, stage_config

    ds, key, out, done = begin_stage(params, variant, "reward", ("sft",), force)
    if done:
        return done
    started = time.time()
    tok = load_tokenizer(base_model_path(params))
    args = stage_config(params, "reward", out / "checkpoints", save_steps=10, eval_strategy="no",
                        dataset_num_proc=None)
    max_len = args.max_length or 512
    train, evald = reward_split(params, ds)
    train = preference_rows(train, tok, params, max_len)
    model = load_reward_model(params, stage_dir(params, variant, "sft"))
    metrics = {"train_rows": len(train), "eval_rows": len(evald) if evald is not None else 0}
    bs = params.evaluation.batch_size
    sources = list(evald["source"]) if evald is not None else []
    evald = preference_rows(evald, tok, params, max_len) if evald is not None else None
    trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tok,
                            peft_config=lora_config(params, "reward", "SEQ_CLS"),
                            callbacks=stage_callbacks("reward model", variant, out))
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


def feature_probe(params: Params, variant: str, max_train_pairs: int | None = 256) -> dict:
    """How much of the reward model's task is visible in the SFT model's features? A logistic
    regression (C picked by 5-fold cross-validation on the training pairs) on the difference of the
    chosen and rejected features that the reward head reads, trained on the reward stage's own
    training pairs and scored on its held-out pairs: a diagnostic ceiling for a linear head, next to
    the trained reward model's accuracy. Costs forward passes only."""
    from sklearn.linear_model import LogisticRegressionCV

    from .models import base_model_path, load_reward_model, load_tokenizer
    from .params import stage_config
    from .selection import load_variant
    require(params, variant, "sft")
    ds = load_variant(params, variant)
    tok = load_tokenizer(base_model_path(params))
    # the reward stage's max_length (its config's default when params leave it out), not a guess
    max_len = stage_config(params, "reward", stage_dir(params, variant, "reward") / "checkpoints").max_length or 512
    train, evald = reward_split(params, ds)
    if evald is None:
        raise ValueError(f"variant '{variant}': reward.eval_fraction is 0, no held-out pairs to probe")
    if max_train_pairs is not None and len(train) > max_train_pairs:
        train = train.shuffle(seed=params.seed).select(range(max_train_pairs))
    sources = list(evald["source"])
    model = load_reward_model(params, stage_dir(params, variant, "sft"))
    bs = params.evaluation.batch_size

    def diff(rows):
        rows = preference_rows(rows, tok, params, max_len)
        f = lambda key: last_token_features(model, tok, [r["prompt"] + r[key] for r in rows], bs, max_len)
        return f("chosen") - f("rejected")

    x_train, x_eval = diff(train), diff(evald)
    flip = np.random.default_rng(params.seed).random(len(x_train)) < 0.5   # both classes, no intercept
    x = np.where(flip[:, None], -x_train, x_train)
    clf = LogisticRegressionCV(Cs=[1e-3, 1e-2, 1e-1, 1.0], cv=5, fit_intercept=False, max_iter=5000)
    with warnings.catch_warnings():   # scikit-learn's notices of future defaults, not about this fit
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(x, (~flip).astype(int))
    correct = x_eval @ clf.coef_[0] > 0
    ci = proportion(int(np.sum(correct)), len(correct))
    return {"variant": variant, "train_pairs": len(x_train), "eval_pairs": len(correct),
            "probe_C": float(clf.C_[0]), "probe_train_accuracy": float(np.mean((x @ clf.coef_[0] > 0) == ~flip)),
            "probe_eval_accuracy": float(np.mean(correct)), "probe_eval_p_value": above_chance_p(correct),
            **{f"probe_eval_accuracy_{k}": ci[k] for k in ("lo", "hi")},
            "probe_eval_accuracy_by_source": accuracy_by_source(correct, sources)}


def feature_probe_table(params: Params, variants: list[str], max_train_pairs: int | None = 256):
    """`feature_probe` of each variant beside its trained reward model's held-out accuracy (when
    that stage has run) -> tables/04_feature_probe."""
    import json

    import pandas as pd

    from .report import save_table
    rows = []
    for v in variants:
        m = stage_dir(params, v, "reward") / "manifest.json"
        trained = json.loads(m.read_text())["metrics"].get("eval_accuracy") if m.is_file() else None
        rows.append({**feature_probe(params, v, max_train_pairs), "reward_model_eval_accuracy": trained})
    df = pd.json_normalize(rows)
    save_table(df, "04_feature_probe", params, caption="Linear probe on the SFT model's features (logistic "
               "regression on chosen - rejected) vs the trained reward model, same held-out pairs")
    return df


# --------------------------------------------------------------------------- PPO
def probe_reward(policy, reward_model, tok, prompts: list[str], max_new_tokens: int) -> np.ndarray:
    """Reward-model score of the policy's greedy answer to each prompt."""
    from .scoring import generate_greedy
    if not prompts:
        return np.zeros(0)
    was_training = policy.training
    policy.eval()
    answers = generate_greedy(policy, tok, prompts, max_new_tokens)
    policy.train(was_training)
    return reward_scores(reward_model, tok, [p + a for p, a in zip(prompts, answers)])


def train_ppo(params: Params, variant: str, force: bool = False) -> dict:
    from trl.experimental.ppo import PPOTrainer

    from .distributed import world_size
    from .models import base_model_path, format_prompt, load_causal_lm, load_reward_model, load_tokenizer
    from .params import lora_config, stage_config

    # PPOTrainer keeps no resumable checkpoint: an interrupted PPO restarts its stage
    ds, key, out, done = begin_stage(params, variant, "ppo", ("sft", "reward"), force, resumable=False)
    if done:
        return done
    started = time.time()
    path = base_model_path(params)
    tok = load_tokenizer(path)
    tok.padding_side = "left"
    args = stage_config(params, "ppo", out / "checkpoints", save_strategy="no", stop_token="eos",
                        num_sample_generations=0, dataset_num_proc=None)
    max_prompt = params.rl.ppo.max_prompt_length
    train, _ = split_rows(ds, 0.0, params.seed, params.rl.ppo.max_rows)

    def enc(r):
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        return {"input_ids": ids[-max_prompt:]}

    prompts = train.map(enc, remove_columns=train.column_names)
    sft_dir, rm_dir = stage_dir(params, variant, "sft"), stage_dir(params, variant, "reward")
    policy = load_causal_lm(params, adapters=[sft_dir], path=path)
    reward_model = load_reward_model(params, sft_dir, rm_dir)
    value_model = copy.deepcopy(reward_model)   # initialised from the reward model, trained apart
    # reference = the SFT model. One process: the policy with its PPO adapter disabled (no copy).
    # Several: trl 1.12 reads that policy off `model.policy`, which the DistributedDataParallel
    # wrapper lacks (AttributeError), so the reference is a frozen copy of the same SFT model.
    ref_model = copy.deepcopy(policy).requires_grad_(False) if world_size() > 1 else None
    for p in reward_model.parameters():
        p.requires_grad_(False)
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref_model,
                         reward_model=reward_model, value_model=value_model, train_dataset=prompts,
                         peft_config=lora_config(params, "ppo", "CAUSAL_LM"),
                         callbacks=stage_callbacks("PPO", variant, out))
    # the same probe prompts answered greedily before and after PPO, scored by the reward model:
    # did the policy learn to get more reward? (batch means during training mix prompt variance in)
    n_probe = min(params.rl.ppo.probe_prompts, len(prompts))
    probe = [tok.decode(r["input_ids"]) for r in prompts.select(range(n_probe))]
    before = probe_reward(trainer.policy_model, reward_model, tok, probe, args.response_length)
    trainer.train()
    log = [r for r in trainer.state.log_history if "objective/scores" in r]
    scores = [r["objective/scores"] for r in log]
    half = max(1, len(scores) // 2)
    metrics = {"prompts": len(prompts), "updates": len(log),
               "reward_first_half": float(np.mean(scores[:half])) if scores else None,
               "reward_second_half": float(np.mean(scores[half:])) if len(scores) > 1 else None,
               "kl_last": log[-1].get("objective/kl") if log else None}
    if n_probe:
        after = probe_reward(trainer.policy_model, reward_model, tok, probe, args.response_length)
        metrics.update({"probe_prompts": n_probe, "probe_reward_before": float(np.mean(before)),
                        "probe_reward_after": float(np.mean(after)),
                        "probe_improved": float(np.mean(after > before))})
    save_adapter(trainer.policy_model, out)
    return write_manifest(params, variant, "ppo", key, trainer, metrics, started)


# --------------------------------------------------------------------------- DPO
def train_dpo(params: Params, variant: str, force: bool = False) -> dict:
    from trl import DPOTrainer

    from .models import base_model_path, load_causal_lm, load_tokenizer
    from .params import lora_config, stage_config

    ds, key, out, done = begin_stage(params, variant, "dpo", ("sft",), force)
    if done:
        return done
    started = time.time()
    path = base_model_path(params)
    tok = load_tokenizer(path)
    args = stage_config(params, "dpo", out / "checkpoints", save_steps=10, eval_strategy="no",
                        dataset_num_proc=None)
    max_len = args.max_length or 512
    train, _ = split_rows(ds, params.rl.dpo.eval_fraction, params.seed, params.rl.dpo.max_rows)
    train = preference_rows(train, tok, params, max_len)
    policy = load_causal_lm(params, adapters=[stage_dir(params, variant, "sft")], path=path)
    trainer = DPOTrainer(model=policy, ref_model=None, args=args, train_dataset=train, processing_class=tok,
                         peft_config=lora_config(params, "dpo", "CAUSAL_LM"),
                         callbacks=stage_callbacks("DPO", variant, out))
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    log = [r for r in trainer.state.log_history if "rewards/accuracies" in r]
    metrics = {"train_rows": len(train), "train_loss": train_loss(trainer, result),
               "reward_accuracy_last": log[-1]["rewards/accuracies"] if log else None}
    save_adapter(trainer.model, out)
    return write_manifest(params, variant, "dpo", key, trainer, metrics, started)


def train_rl(params: Params, variant: str, force: bool = False) -> list[dict]:
    """The second stage of the `-R` model of a variant, as `rl.algorithm` says."""
    if params.rl.algorithm == "dpo":
        return [train_dpo(params, variant, force)]
    return [train_reward(params, variant, force), train_ppo(params, variant, force)]


def model_adapters(params: Params, variant: str, kind: str) -> list:
    """Adapters (in merge order) of model `kind` ('S' or 'R') of a variant."""
    if kind == "S":
        return [stage_dir(params, variant, "sft")]
    return [stage_dir(params, variant, "sft"), stage_dir(params, variant, params.rl.algorithm)]
