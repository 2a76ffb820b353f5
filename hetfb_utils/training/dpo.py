"""Stage 4b with `rl.algorithm: dpo`: the `-R` model learns from the variant's pairs directly (`trl.DPOTrainer`, a LoRA
policy on the SFT model, the reference = the policy with its adapter disabled), no reward model.

`dpo_stage_trainer` is the one builder: its data (`rl.dpo.eval_fraction`, `max_rows`), config, callbacks (the stop on
a non-finite loss, the progress line, TensorBoard) and stage key, for the pipeline (`train_dpo`) and the notebook's
in-view run alike.
"""

from __future__ import annotations

from ..common.params import Params
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


def dpo_config(params: Params, output_dir):
    """The `DPOConfig` of the DPO stage: `params.rl.dpo.args` over the run's defaults."""
    from ..common.configs import stage_config

    return stage_config(params, "dpo", output_dir, save_steps=10, eval_strategy="no", dataset_num_proc=None)


def dpo_trainer(params: Params, variant: str, rows, args, tok, callbacks=None):
    """`DPOTrainer` on the formatted pairs `rows`: a LoRA policy on the variant's SFT model (reference: the adapter
    disabled)."""
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


def dpo_stage_trainer(params: Params, run: StageRun, tok):
    """The trainer of a begun DPO stage: the variant's training pairs (less `rl.dpo.eval_fraction`, at most
    `rl.dpo.max_rows`), formatted; the stage's `DPOConfig`; its callbacks."""
    section = params.rl.dpo
    args = dpo_config(params, run.out / "checkpoints")
    train, _ = split_rows(run.ds, section.eval_fraction, params.data_seed, section.max_rows)
    rows = preference_rows(train, tok, params, args.max_length or 512)
    return dpo_trainer(params, run.variant, rows, args, tok, stage_callbacks("DPO", run.variant, run.out))


def train_dpo(params: Params, variant: str, force: bool = False) -> dict:
    """DPO of a variant's SFT model on its pairs (the `-R` model with `rl.algorithm: dpo`); returns the manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    run = begin_stage(params, variant, "dpo", ("sft",), force)
    if run.done:
        return run.done
    trainer = dpo_stage_trainer(params, run, load_tokenizer(base_model_path(params)))
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
