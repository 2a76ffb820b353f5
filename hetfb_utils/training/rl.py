"""Stage 4b: the `-R` models. The policy (a LoRA adapter on the SFT model) learns against the variant's reward
model with PPO (the paper's) or RLOO (critic-free), or learns from the pairs directly with DPO.

* PPO: `trl.experimental.ppo.PPOTrainer`; the reference is the policy with its adapter disabled; the value model
  is the reward model with a LoRA adapter and its own score head (`rl.ppo.lora`), so only a few hundred
  thousand critic parameters train, not a 135M copy;
* RLOO: `trl.RLOOTrainer` (k sampled answers per prompt, each one's baseline the others' mean reward), rewarded
  by the same reward model through `reward_scores`;
* DPO: `trl.DPOTrainer` on the variant's pairs (`rl.algorithm: dpo`).

PPO and RLOO are judged on held-out prompts before and after (`rl_judge`), with a held-out reward curve per
update, and, with `rl.shuffled_control`, the same run against the shuffled-label reward model as a control.
An `-R` model is the base with the SFT adapter merged and the RL adapter on top.
"""

from __future__ import annotations

import copy
import logging

from ..common.params import Params
from ..common.stats import seed_for
from .heldout import has_pool
from .reward import reward_scores, reward_split, train_reward
from .rl_judge import answer_side, formatted_prompts, heldout_curve, judge_policies, response_length
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


class _GenerationConfigNotice(logging.Filter):
    """trl 1.12's PPOTrainer calls `generate` with a `generation_config` *and* `output_scores` /
    `return_dict_in_generate`, which transformers 5.23 logs as deprecated once per process. The call
    is inside the library; exactly that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


logging.getLogger("transformers.generation.utils").addFilter(_GenerationConfigNotice())


def policy_prompts(params: Params, rows, tok, max_prompt: int, column: str = "input_ids"):
    """Variant rows as the RL trainer reads them: the prompt through the chat template, its last `max_prompt`
    tokens; as token ids (`input_ids`, PPO) or as text (`prompt`, RLOO)."""
    from ..models.loading import format_prompt

    def enc(r):
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        ids = ids[-max_prompt:]
        return {column: ids if column == "input_ids" else tok.decode(ids)}

    return rows.map(enc, remove_columns=rows.column_names)


# --------------------------------------------------------------------------- PPO
def ppo_config(params: Params, output_dir):
    """The `PPOConfig` of the PPO stage: `params.rl.ppo.args` over the run's defaults (no checkpoints: PPO
    restarts its stage; responses stop at the end-of-sequence token)."""
    from ..common.configs import stage_config

    return stage_config(
        params, "ppo", output_dir, save_strategy="no", stop_token="eos", num_sample_generations=0, dataset_num_proc=None
    )


def ppo_prompts(params: Params, rows, tok):
    """Variant rows as PPO reads them: token ids of the chat-formatted prompt, its last `max_prompt_length`."""
    return policy_prompts(params, rows, tok, params.rl.ppo.max_prompt_length)


def lora_value_model(params: Params, reward_model):
    """The critic: a copy of the reward model with a LoRA adapter and a trainable score head (PEFT's
    sequence-classification task keeps `score` trainable), returned as the plain transformers model PPO reads
    (`model.<backbone>`, `model.score`) with the LoRA layers inside it."""
    from peft import get_peft_model

    from ..common.configs import lora_config

    value = copy.deepcopy(reward_model).requires_grad_(False)
    return get_peft_model(value, lora_config(params, "ppo", "SEQ_CLS")).base_model.model


def ppo_trainer(params: Params, variant: str, prompts, args, tok, callbacks=None, reward_dir=None):
    """`PPOTrainer` as the PPO stage builds it: a LoRA policy on the SFT model, the reference = that policy with
    its adapter disabled, the frozen reward model of the variant (or `reward_dir`: the shuffled-label control's),
    a LoRA value model initialised from it. Returns (trainer, reward model)."""
    from trl.experimental.ppo import PPOTrainer

    from ..common.configs import lora_config
    from ..common.distributed import world_size
    from ..models.loading import base_model_path, load_causal_lm, load_reward_model

    sft_dir = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, adapters=[sft_dir], path=base_model_path(params))
    reward_model = load_reward_model(params, sft_dir, reward_dir or stage_dir(params, variant, "reward"))
    value_model = lora_value_model(params, reward_model)
    # reference = the SFT model. One process: the policy with its PPO adapter disabled (no copy).
    # Several: trl 1.12 reads that policy off `model.policy`, which the DistributedDataParallel
    # wrapper lacks (AttributeError), so the reference is a frozen copy of the same SFT model.
    ref_model = copy.deepcopy(policy).requires_grad_(False) if world_size() > 1 else None
    reward_model.requires_grad_(False)
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


# --------------------------------------------------------------------------- RLOO
def rloo_config(params: Params, output_dir):
    """The `RLOOConfig` of the RLOO stage: `params.rl.rloo.args` over the run's defaults."""
    from ..common.configs import stage_config

    return stage_config(params, "rloo", output_dir, save_strategy="no", dataset_num_proc=None)


def reward_function(reward_model, tok, batch_size: int = 16):
    """The reward model as the function RLOO calls: (prompts, completions) -> one reward each."""

    def reward_model_score(prompts, completions, **_):
        return reward_scores(reward_model, tok, [p + c for p, c in zip(prompts, completions)], batch_size).tolist()

    return reward_model_score


def rloo_trainer(params: Params, variant: str, prompts, args, tok, callbacks=None, reward_dir=None):
    """`RLOOTrainer` as the RLOO stage builds it: a LoRA policy on the SFT model (reference: the adapter
    disabled), rewarded by the variant's reward model (or `reward_dir`'s). Returns (trainer, reward model)."""
    from trl import RLOOTrainer

    from ..common.configs import lora_config
    from ..models.loading import base_model_path, load_causal_lm, load_reward_model

    sft_dir = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, adapters=[sft_dir], path=base_model_path(params))
    reward_model = load_reward_model(params, sft_dir, reward_dir or stage_dir(params, variant, "reward"))
    reward_model.requires_grad_(False)
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=reward_function(reward_model, tok, params.evaluation.batch_size),
        args=args,
        train_dataset=prompts,
        processing_class=tok,
        peft_config=lora_config(params, "rloo", "CAUSAL_LM"),
        callbacks=callbacks,
    )
    return trainer, reward_model


def rloo_prompts(params: Params, rows, tok):
    """Variant rows as RLOO reads them: the chat-formatted prompt as text, its last `max_prompt_length` tokens."""
    return policy_prompts(params, rows, tok, params.rl.rloo.max_prompt_length, column="prompt")


# --------------------------------------------------------------------------- the RL stage (PPO or RLOO)
BUILDERS = {"ppo": (ppo_config, ppo_prompts, ppo_trainer), "rloo": (rloo_config, rloo_prompts, rloo_trainer)}


def policy_of(trainer):
    """The policy module a trainer holds (PPO: `policy_model`; RLOO: `model`)."""
    return getattr(trainer, "policy_model", None) or trainer.model


def rl_rows(params: Params, run: StageRun):
    """(training rows, held-out rows or None) of a PPO / RLOO stage. Where the run's sources have a held-out pool
    (`heldout.has_pool`), RL trains on every row of the variant (up to `max_rows`) and is judged on the pool;
    where some source has none (custom sources), the rows the reward model was judged on (`reward.eval_fraction`)
    are held out of RL training too, and its before/after judgement reads their prompts."""
    section = getattr(params.rl, run.stage)
    if has_pool(params):
        return split_rows(run.ds, 0.0, params.data_seed, section.max_rows)[0], None
    train, own = reward_split(params, run.ds)
    return split_rows(train, 0.0, params.data_seed, section.max_rows)[0], own


def policy_trainer(params: Params, run: StageRun, tok, reward_dir=None, out=None, curve: bool = True):
    """The trainer of a begun PPO / RLOO stage (`run.stage`): its config (`params.rl.<stage>.args`), the variant's
    prompts, the trainer as `ppo_trainer` / `rloo_trainer` build it and, with `curve`, the held-out reward curve
    callback. `reward_dir`, `out`: another reward model and directory (the shuffled-label control)."""
    config, prompts_of, build = BUILDERS[run.stage]
    out = out or run.out
    section = getattr(params.rl, run.stage)
    train, own = rl_rows(params, run)
    prompts = prompts_of(params, train, tok)
    label = run.stage.upper() + (" control" if reward_dir else "")
    callbacks = stage_callbacks(label, run.variant, out)
    trainer, reward_model = build(
        params, run.variant, prompts, config(params, out / "checkpoints"), tok, callbacks, reward_dir
    )
    run.metrics["prompts"] = len(prompts)
    if curve and params.rl.curve_prompts:
        shown = formatted_prompts(params, tok, params.rl.curve_prompts, section.max_prompt_length, own)
        trainer.add_callback(
            heldout_curve(
                lambda: policy_of(trainer),
                reward_model,
                tok,
                shown,
                response_length(params),
                batch_size=params.evaluation.batch_size,
                k=params.rl.judge_samples,
                seed=seed_for(params.eval_seed, "rl-curve"),
            )
        )
    return trainer


def finish_policy(params: Params, run: StageRun, trainer, tok) -> dict:
    """After `trainer.train()`: the adapter; the SFT model and the trained policy judged on held-out prompts by the
    reward model (paired reward gain with its interval, lengths, KL); with `rl.shuffled_control`, the same run
    against the shuffled-label reward model judged by the real one; the manifest."""
    from ..models.loading import load_causal_lm, load_reward_model

    save_adapter(policy_of(trainer), run.out)
    section = getattr(params.rl, run.stage)
    own = rl_rows(params, run)[1]
    judged = formatted_prompts(params, tok, params.rl.heldout_prompts, section.max_prompt_length, own)
    sft_dir, rm_dir = stage_dir(params, run.variant, "sft"), stage_dir(params, run.variant, "reward")
    reward_model, before = load_reward_model(params, sft_dir, rm_dir), load_causal_lm(params, [sft_dir])
    run.metrics["updates"] = trainer.state.global_step
    after = load_causal_lm(params, [sft_dir, run.out])
    sft_side = answer_side(params, before, reward_model, tok, judged)  # judged once: the real run and the control
    run.metrics.update(judge_policies(params, before, after, reward_model, tok, judged, "heldout", sft_side))
    if params.rl.shuffled_control and (rm_dir / "shuffled" / "adapter_config.json").is_file():
        control_dir = run.out / "control"
        control = policy_trainer(params, run, tok, rm_dir / "shuffled", control_dir, curve=False)
        control.train()
        save_adapter(policy_of(control), control_dir)
        after = load_causal_lm(params, [sft_dir, control_dir])
        run.metrics.update(judge_policies(params, before, after, reward_model, tok, judged, "control", sft_side))
    return finish_stage(params, run, trainer)


def train_policy(params: Params, variant: str, stage: str, force: bool = False) -> dict:
    """PPO or RLOO of a variant's SFT model against its reward model (the `-R` model), judged on held-out prompts
    before and after (and against a shuffled-label control, `rl.shuffled_control`); returns the stage manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    # an RL trainer keeps no resumable checkpoint: an interrupted run restarts its stage
    run = begin_stage(params, variant, stage, ("sft", "reward"), force, resumable=False)
    if run.done:
        return run.done
    tok = load_tokenizer(base_model_path(params))
    tok.padding_side = "left"
    trainer = policy_trainer(params, run, tok)
    trainer.train()
    return finish_policy(params, run, trainer, tok)


def train_ppo(params: Params, variant: str, force: bool = False) -> dict:
    """PPO of a variant's SFT model against its reward model; returns the stage manifest."""
    return train_policy(params, variant, "ppo", force)


def train_rloo(params: Params, variant: str, force: bool = False) -> dict:
    """RLOO of a variant's SFT model against its reward model; returns the stage manifest."""
    return train_policy(params, variant, "rloo", force)


# --------------------------------------------------------------------------- DPO
def dpo_config(params: Params, output_dir):
    """The `DPOConfig` of the DPO stage: `params.rl.dpo.args` over the run's defaults."""
    from ..common.configs import stage_config

    return stage_config(params, "dpo", output_dir, save_steps=10, eval_strategy="no", dataset_num_proc=None)


def dpo_trainer(params: Params, variant: str, rows, args, tok, callbacks=None):
    """`DPOTrainer` as the DPO stage builds it: a LoRA policy on the SFT model (reference: the adapter disabled)
    on the formatted pairs `rows`."""
    from trl import DPOTrainer

    from ..common.configs import lora_config
    from ..models.loading import base_model_path, load_causal_lm

    policy = load_causal_lm(params, adapters=[stage_dir(params, variant, "sft")], path=base_model_path(params))
    return DPOTrainer(
        model=policy,
        ref_model=None,
        args=args,
        train_dataset=rows,
        processing_class=tok,
        peft_config=lora_config(params, "dpo", "CAUSAL_LM"),
        callbacks=callbacks,
    )


def train_dpo(params: Params, variant: str, force: bool = False) -> dict:
    """DPO of a variant's SFT model on its pairs (the `-R` model with `rl.algorithm: dpo`); returns the manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    run = begin_stage(params, variant, "dpo", ("sft",), force)
    if run.done:
        return run.done
    tok = load_tokenizer(base_model_path(params))
    args = dpo_config(params, run.out / "checkpoints")
    train, _ = split_rows(run.ds, params.rl.dpo.eval_fraction, params.data_seed, params.rl.dpo.max_rows)
    train = preference_rows(train, tok, params, args.max_length or 512)
    trainer = dpo_trainer(params, variant, train, args, tok, stage_callbacks("DPO", variant, run.out))
    result = trainer.train(resume_from_checkpoint=last_checkpoint(run.out))
    return finish_dpo(params, run, trainer, result)


def finish_dpo(params: Params, run: StageRun, trainer, result=None) -> dict:
    """After `trainer.train()`: the loss, the last logged preference accuracy (the implicit reward of chosen above
    rejected), the adapter, the manifest."""
    log = [r for r in trainer.state.log_history if "rewards/accuracies" in r]
    run.metrics.update(
        {
            "train_rows": len(trainer.train_dataset),
            "train_loss": train_loss(trainer, result),
            "reward_accuracy_last": log[-1]["rewards/accuracies"] if log else None,
            "reward_margin_last": log[-1].get("rewards/margins") if log else None,
        }
    )
    save_adapter(trainer.model, run.out)
    return finish_stage(params, run, trainer)


def train_rl(params: Params, variant: str, force: bool = False) -> list[dict]:
    """The second stage of the `-R` model of a variant, as `rl.algorithm` says (`none`, or a variant `rl.variants`
    leaves out: no `-R` model)."""
    algorithm = params.rl.algorithm
    if variant not in params.rl_variants:  # rl.algorithm none, or rl.variants leaves this variant out
        return []
    if algorithm == "dpo":
        return [train_dpo(params, variant, force)]
    return [train_reward(params, variant, force), train_policy(params, variant, algorithm, force)]


def model_adapters(params: Params, variant: str, kind: str) -> list:
    """Adapters (in merge order) of model `kind` ('S' or 'R') of a variant."""
    if kind == "S":
        return [stage_dir(params, variant, "sft")]
    if params.rl.algorithm == "none":
        raise ValueError("rl.algorithm is `none`: the run has no -R models")
    return [stage_dir(params, variant, "sft"), stage_dir(params, variant, params.rl.algorithm)]
