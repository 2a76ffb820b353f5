"""Stage 4b: PPO against the reward model (the paper's `-R` models), or DPO as a modern alternative.

* PPO: `trl.experimental.ppo.PPOTrainer` with a LoRA policy on top of the SFT model (reference =
  adapters disabled), value model initialised from the reward model, prompts of the variant;
* DPO: TRL `DPOTrainer` + LoRA on the same pairs, from the SFT model (`rl.algorithm: dpo`).

An `-R` model is the base with the SFT adapter merged and the PPO (or DPO) adapter on top.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np

from ..common.params import Params
from .reward import reward_scores, train_reward
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


class _GenerationConfigNotice(logging.Filter):
    """trl 1.12's PPOTrainer calls `generate` with a `generation_config` *and* `output_scores` /
    `return_dict_in_generate`, which transformers 5.23 logs as deprecated once per process. The call
    is inside the library; exactly that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


logging.getLogger("transformers.generation.utils").addFilter(_GenerationConfigNotice())


# --------------------------------------------------------------------------- PPO
def probe_reward(policy, reward_model, tok, prompts: list[str], max_new_tokens: int) -> np.ndarray:
    """Reward-model score of the policy's greedy answer to each prompt."""
    from ..models.scoring import generate_greedy

    if not prompts:
        return np.zeros(0)
    was_training = policy.training
    policy.eval()
    answers = generate_greedy(policy, tok, prompts, max_new_tokens)
    policy.train(was_training)
    return reward_scores(reward_model, tok, [p + a for p, a in zip(prompts, answers)])


def ppo_config(params: Params, output_dir):
    """The `PPOConfig` of the PPO stage: `params.rl.ppo.args` over the run's defaults (no checkpoints: PPO
    restarts its stage; responses stop at the end-of-sequence token)."""
    from ..common.configs import stage_config

    return stage_config(
        params, "ppo", output_dir, save_strategy="no", stop_token="eos", num_sample_generations=0, dataset_num_proc=None
    )


def ppo_prompts(params: Params, rows, tok):
    """Variant rows as PPO reads them: the prompt through the chat template, its last `max_prompt_length` tokens."""
    from ..models.loading import format_prompt

    max_prompt = params.rl.ppo.max_prompt_length

    def enc(r):
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        return {"input_ids": ids[-max_prompt:]}

    return rows.map(enc, remove_columns=rows.column_names)


def ppo_trainer(params: Params, variant: str, prompts, args, tok, callbacks=None):
    """`PPOTrainer` as the PPO stage builds it: a LoRA policy on the SFT model, the reference = that policy
    with its adapter disabled, the frozen reward model of the variant, a value model initialised from it.
    Returns (trainer, reward model)."""
    from trl.experimental.ppo import PPOTrainer

    from ..common.configs import lora_config
    from ..common.distributed import world_size
    from ..models.loading import base_model_path, load_causal_lm, load_reward_model

    sft_dir, rm_dir = stage_dir(params, variant, "sft"), stage_dir(params, variant, "reward")
    policy = load_causal_lm(params, adapters=[sft_dir], path=base_model_path(params))
    reward_model = load_reward_model(params, sft_dir, rm_dir)
    value_model = copy.deepcopy(reward_model)  # initialised from the reward model, trained apart
    # reference = the SFT model. One process: the policy with its PPO adapter disabled (no copy).
    # Several: trl 1.12 reads that policy off `model.policy`, which the DistributedDataParallel
    # wrapper lacks (AttributeError), so the reference is a frozen copy of the same SFT model.
    ref_model = copy.deepcopy(policy).requires_grad_(False) if world_size() > 1 else None
    for p in reward_model.parameters():
        p.requires_grad_(False)
    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref_model,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=prompts,
        peft_config=lora_config(params, "ppo", "CAUSAL_LM"),
        callbacks=callbacks,
    )
    return trainer, reward_model


def train_ppo(params: Params, variant: str, force: bool = False) -> dict:
    """PPO of a variant's SFT model against its reward model (the `-R` model); returns the stage manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    # PPOTrainer keeps no resumable checkpoint: an interrupted PPO restarts its stage
    ds, key, out, done = begin_stage(params, variant, "ppo", ("sft", "reward"), force, resumable=False)
    if done:
        return done
    started = time.time()
    tok = load_tokenizer(base_model_path(params))
    tok.padding_side = "left"
    args = ppo_config(params, out / "checkpoints")
    train, _ = split_rows(ds, 0.0, params.data_seed, params.rl.ppo.max_rows)
    prompts = ppo_prompts(params, train, tok)
    trainer, reward_model = ppo_trainer(params, variant, prompts, args, tok, stage_callbacks("PPO", variant, out))
    # the same probe prompts answered greedily before and after PPO, scored by the reward model:
    # did the policy learn to get more reward? (batch means during training mix prompt variance in)
    n_probe = min(params.rl.ppo.probe_prompts, len(prompts))
    probe = [tok.decode(r["input_ids"]) for r in prompts.select(range(n_probe))]
    before = probe_reward(trainer.policy_model, reward_model, tok, probe, args.response_length)
    trainer.train()
    log = [r for r in trainer.state.log_history if "objective/scores" in r]
    scores = [r["objective/scores"] for r in log]
    half = max(1, len(scores) // 2)
    metrics = {
        "prompts": len(prompts),
        "updates": len(log),
        "reward_first_half": float(np.mean(scores[:half])) if scores else None,
        "reward_second_half": float(np.mean(scores[half:])) if len(scores) > 1 else None,
        "kl_last": log[-1].get("objective/kl") if log else None,
    }
    if n_probe:
        after = probe_reward(trainer.policy_model, reward_model, tok, probe, args.response_length)
        metrics.update(
            {
                "probe_prompts": n_probe,
                "probe_reward_before": float(np.mean(before)),
                "probe_reward_after": float(np.mean(after)),
                "probe_improved": float(np.mean(after > before)),
            }
        )
    save_adapter(trainer.policy_model, out)
    return write_manifest(params, variant, "ppo", key, trainer, metrics, started)


# --------------------------------------------------------------------------- DPO
def train_dpo(params: Params, variant: str, force: bool = False) -> dict:
    """DPO of a variant's SFT model on its pairs (the `-R` model with `rl.algorithm: dpo`); returns the manifest."""
    from trl import DPOTrainer

    from ..common.configs import lora_config, stage_config
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer

    ds, key, out, done = begin_stage(params, variant, "dpo", ("sft",), force)
    if done:
        return done
    started = time.time()
    path = base_model_path(params)
    tok = load_tokenizer(path)
    args = stage_config(params, "dpo", out / "checkpoints", save_steps=10, eval_strategy="no", dataset_num_proc=None)
    max_len = args.max_length or 512
    train, _ = split_rows(ds, params.rl.dpo.eval_fraction, params.data_seed, params.rl.dpo.max_rows)
    train = preference_rows(train, tok, params, max_len)
    policy = load_causal_lm(params, adapters=[stage_dir(params, variant, "sft")], path=path)
    trainer = DPOTrainer(
        model=policy,
        ref_model=None,
        args=args,
        train_dataset=train,
        processing_class=tok,
        peft_config=lora_config(params, "dpo", "CAUSAL_LM"),
        callbacks=stage_callbacks("DPO", variant, out),
    )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    log = [r for r in trainer.state.log_history if "rewards/accuracies" in r]
    metrics = {
        "train_rows": len(train),
        "train_loss": train_loss(trainer, result),
        "reward_accuracy_last": log[-1]["rewards/accuracies"] if log else None,
    }
    save_adapter(trainer.model, out)
    return write_manifest(params, variant, "dpo", key, trainer, metrics, started)


def train_rl(params: Params, variant: str, force: bool = False) -> list[dict]:
    """The second stage of the `-R` model of a variant, as `rl.algorithm` says (`none`: no `-R` model)."""
    if params.rl.algorithm == "none":
        return []
    if params.rl.algorithm == "dpo":
        return [train_dpo(params, variant, force)]
    return [train_reward(params, variant, force), train_ppo(params, variant, force)]


def model_adapters(params: Params, variant: str, kind: str) -> list:
    """Adapters (in merge order) of model `kind` ('S' or 'R') of a variant."""
    if kind == "S":
        return [stage_dir(params, variant, "sft")]
    if params.rl.algorithm == "none":
        raise ValueError("rl.algorithm is `none`: the run has no -R models")
    return [stage_dir(params, variant, "sft"), stage_dir(params, variant, params.rl.algorithm)]
