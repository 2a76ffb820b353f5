"""Stage 4b: the `-R` models. The policy (a LoRA adapter on the SFT model) learns against the variant's reward
model with PPO (the paper's) or RLOO (critic-free); with `rl.algorithm: dpo` it learns from the pairs (`dpo`).

* PPO: `trl.experimental.ppo.PPOTrainer`; the reference is the policy with its adapter disabled; the value model
  is the reward model with a LoRA adapter and its own score head (`rl.ppo.lora`), so only a few hundred
  thousand critic parameters train, not a 135M copy; the reward it reads is the kit's rule (`reward_rule`);
* RLOO: `trl.RLOOTrainer` (k sampled answers per prompt, each one's baseline the others' mean reward), rewarded
  by the same rule on the sampled token ids (`rl_rewards`).

The policy trains on the prompts of the sources its reward model learned (`rl.prompt_sources: learned`, from the
reward stage's per-source judgement) and is judged on held-out prompts of those sources before and after (`rl_judge`),
with a held-out reward curve per update and, with `rl.controls`, the same run against the shuffled-label head and
against length alone, each at the real reward's spread (`rl_rewards`), judged by the real reward model.
An `-R` model is the base with the SFT adapter merged and the RL adapter on top.
"""

from __future__ import annotations

import copy
import logging

from ..common.params import Params
from ..common.stats import seed_for
from .dpo import dpo_config, dpo_stage_trainer, dpo_trainer, finish_dpo, train_dpo
from .heldout import has_pool
from .reward import load_variant_reward, reward_split, train_reward
from .rl_judge import answer_side, formatted_prompts, heldout_curve, judge_policies, response_length, sample_temperature
from .rl_rewards import RewardSpec, control_spec, ppo_reward, rloo_reward
from .stages import (
    StageRun,
    begin_stage,
    finish_stage,
    release,
    require,
    save_adapter,
    split_rows,
    stage_callbacks,
    stage_dir,
)

__all__ = ["dpo_config", "dpo_stage_trainer", "dpo_trainer", "finish_dpo", "train_dpo"]


class _GenerationConfigNotice(logging.Filter):
    """trl 1.12's PPOTrainer calls `generate` with a `generation_config` *and* `output_scores` /
    `return_dict_in_generate`, which transformers 5.23 logs as deprecated once per process. The call
    is inside the library; exactly that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


logging.getLogger("transformers.generation.utils").addFilter(_GenerationConfigNotice())


def policy_prompts(params: Params, rows, tok, max_prompt: int, column: str = "input_ids"):
    """Variant rows as the RL trainer reads them: the prompt through the chat template, its last `max_prompt`
    tokens; as token ids left-padded to exactly `max_prompt` (`input_ids`, PPO: every rollout's prompt then fills
    the same columns, which the length control counts from) or as text (`prompt`, RLOO)."""
    from ..models.loading import format_prompt

    def enc(r):
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        ids = ids[-max_prompt:]
        if column != "input_ids":
            return {column: tok.decode(ids)}
        return {column: [tok.pad_token_id] * (max_prompt - len(ids)) + ids}

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


def ppo_trainer(params: Params, variant: str, prompts, args, tok, callbacks=None, reward: RewardSpec | None = None):
    """`PPOTrainer` as the PPO stage builds it: a LoRA policy on the SFT model, the reference = that policy with
    its adapter disabled, the reward `reward` (default: the variant's reward model) as the module TRL reads
    (`rl_rewards.ppo_reward`: the kit's rule), a LoRA value model initialised from the variant's reward model.
    Returns (trainer, the variant's reward model)."""
    from trl.experimental.ppo import PPOTrainer

    from ..common.configs import lora_config
    from ..common.distributed import world_size
    from ..models.loading import base_model_path, load_causal_lm

    sft_dir = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, adapters=[sft_dir], path=base_model_path(params))
    reward_model = load_variant_reward(params, variant).requires_grad_(False)
    value_model = lora_value_model(params, reward_model)
    # reference = the SFT model. One process: the policy with its PPO adapter disabled (no copy).
    # Several: trl 1.12 reads that policy off `model.policy`, which the DistributedDataParallel
    # wrapper lacks (AttributeError), so the reference is a frozen copy of the same SFT model.
    ref_model = copy.deepcopy(policy).requires_grad_(False) if world_size() > 1 else None
    spec = reward or RewardSpec("real", reward_model)
    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref_model,
        reward_model=ppo_reward(spec, tok, params.rl.ppo.max_prompt_length),
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


def rloo_trainer(params: Params, variant: str, prompts, args, tok, callbacks=None, reward: RewardSpec | None = None):
    """`RLOOTrainer` as the RLOO stage builds it: a LoRA policy on the SFT model (reference: the adapter disabled),
    rewarded by `reward` (default: the variant's reward model) under the kit's rule (`rl_rewards.rloo_reward`).
    Returns (trainer, the variant's reward model)."""
    from trl import RLOOTrainer

    from ..common.configs import lora_config
    from ..models.loading import base_model_path, load_causal_lm

    sft_dir = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, adapters=[sft_dir], path=base_model_path(params))
    reward_model = load_variant_reward(params, variant).requires_grad_(False)
    spec = reward or RewardSpec("real", reward_model)
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=rloo_reward(spec, tok, params.evaluation.batch_size),
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


def rl_sources(params: Params, variant: str) -> list[str] | None:
    """The sources whose prompts RL trains and is judged on (`rl.prompt_sources`; None: every source). `learned`
    reads the reward stage's judgement; when the reward model learned no source, every source (the stage's
    manifest says so)."""
    chosen = params.rl.prompt_sources
    if chosen == "all":
        return None
    if isinstance(chosen, list):
        return list(chosen)
    return require(params, variant, "reward")["metrics"].get("learned_sources") or None


def rl_rows(params: Params, run: StageRun, sources: list[str] | None = None):
    """(training rows, held-out rows or None) of a PPO / RLOO stage, of `sources` (None: all). Where the run's sources
    have a held-out pool (`heldout.has_pool`), RL trains on every such row of the variant (up to `max_rows`) and is
    judged on the pool; where some source has none (custom sources), the rows the reward model was judged on
    (`reward.eval_fraction`) are held out of RL training too, and its before/after judgement reads their prompts."""
    section = getattr(params.rl, run.stage)
    ds = run.ds.filter(lambda r: r["source"] in sources) if sources else run.ds
    if has_pool(params):
        return split_rows(ds, 0.0, params.data_seed, section.max_rows)[0], None
    train, own = reward_split(params, run.ds)
    if sources:
        train = train.filter(lambda r: r["source"] in sources)
    return split_rows(train, 0.0, params.data_seed, section.max_rows)[0], own


def policy_trainer(params: Params, run: StageRun, tok, reward: RewardSpec | None = None, out=None, curve=True):
    """The trainer of a begun PPO / RLOO stage (`run.stage`): its config (`params.rl.<stage>.args`), the variant's
    prompts of the sources RL trains on (`rl_sources`), the trainer as `ppo_trainer` / `rloo_trainer` build it and,
    with `curve`, the held-out reward curve callback. `reward`, `out`: a control's reward and directory."""
    config, prompts_of, build = BUILDERS[run.stage]
    out = out or run.out
    section = getattr(params.rl, run.stage)
    sources = rl_sources(params, run.variant)
    train, own = rl_rows(params, run, sources)
    prompts = prompts_of(params, train, tok)
    label = run.stage.upper() + (f" {reward.kind} control" if reward is not None and reward.kind != "real" else "")
    callbacks = stage_callbacks(label, run.variant, out)
    trainer, reward_model = build(
        params, run.variant, prompts, config(params, out / "checkpoints"), tok, callbacks, reward
    )
    run.metrics.update({"prompts": len(prompts), "prompt_sources": sources or "all"})
    if curve and params.rl.curve_prompts:
        shown = formatted_prompts(params, tok, params.rl.curve_prompts, section.max_prompt_length, own, sources)
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
                temperature=sample_temperature(params),
            )
        )
    return trainer


def judged_prompts(params: Params, run: StageRun, tok) -> list[str]:
    """The held-out prompts a PPO / RLOO stage is judged on (`rl.heldout_prompts` of its sources' `judged` half)."""
    section = getattr(params.rl, run.stage)
    sources = rl_sources(params, run.variant)
    own = rl_rows(params, run, sources)[1]
    return formatted_prompts(params, tok, params.rl.heldout_prompts, section.max_prompt_length, own, sources)


class WithoutAdapter:
    """A PEFT model seen with its adapter off, for code that calls `generate` or the model: the SFT model that the
    adapter was trained on, without a second copy of its weights in memory."""

    def __init__(self, peft_model):
        self._model = peft_model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        with self._model.disable_adapter():
            return self._model.generate(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        with self._model.disable_adapter():
            return self._model(*args, **kwargs)


def judge_models(params: Params, variant: str, adapter):
    """(the SFT model, the RL policy): one SFT model in memory with the RL adapter on top (not merged), seen without
    it for the SFT side. `load_adapter` / `set_adapter` of the second put a control's adapter on the same weights."""
    from peft import PeftModel

    from ..models.loading import load_causal_lm

    policy = PeftModel.from_pretrained(load_causal_lm(params, [stage_dir(params, variant, "sft")]), str(adapter))
    return WithoutAdapter(policy.eval()), policy.eval()


def finish_policy(params: Params, run: StageRun, trainer, tok) -> dict:
    """After `trainer.train()`: the adapter; the SFT model and the trained policy judged on held-out prompts by the
    reward model (paired reward gain, length-matched gain, finish rate, lengths, KL); with `rl.controls` (for the
    variants of `rl.control_variants`), the same run against each control reward, judged by the real reward model on
    the same prompts; the manifest."""
    save_adapter(policy_of(trainer), run.out)
    run.metrics["updates"] = trainer.state.global_step
    release(trainer)  # its policy is saved: the judgement loads the models it compares
    judged = judged_prompts(params, run, tok)
    reward_model = load_variant_reward(params, run.variant)
    before, after = judge_models(params, run.variant, run.out)
    sft_side = answer_side(params, before, reward_model, tok, judged)  # judged once: the real run and the controls
    run.metrics.update(judge_policies(params, before, after, reward_model, tok, judged, "heldout", sft_side))
    for kind in controls_of(params, run.variant):
        shuffled = None  # the length control reads no reward model
        if kind == "shuffled":
            shuffled = load_variant_reward(params, run.variant, stage_dir(params, run.variant, "reward") / "shuffled")
        spec = control_spec(kind, sft_side, shuffled, tok, params.evaluation.batch_size)
        out = run.out / f"control-{kind}"
        control = policy_trainer(params, run, tok, spec, out, curve=False)
        control.train()
        save_adapter(policy_of(control), out)
        release(control)
        control_scale = spec.scale
        del shuffled, spec  # the control's reward model: not needed to judge it
        label = f"control_{kind}"
        after.load_adapter(str(out), adapter_name=label)
        after.set_adapter(label)
        run.metrics.update(judge_policies(params, before, after, reward_model, tok, judged, label, sft_side))
        run.metrics[f"{label}_scale"] = control_scale
    return finish_stage(params, run, trainer)


def controls_of(params: Params, variant: str) -> list[str]:
    """The control RL runs of a variant (`rl.controls` where `rl.control_variants` includes it; the shuffled one
    only when the reward stage saved its shuffled-label head)."""
    wanted = params.rl.control_variants
    if wanted is not None and variant not in wanted:
        return []
    has_shuffled = (stage_dir(params, variant, "reward") / "shuffled" / "adapter_config.json").is_file()
    return [c for c in params.rl.controls if c != "shuffled" or has_shuffled]


def train_policy(params: Params, variant: str, stage: str, force: bool = False) -> dict:
    """PPO or RLOO of a variant's SFT model against its reward model (the `-R` model), judged on held-out prompts
    before and after (and against the control rewards, `rl.controls`); returns the stage manifest."""
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
