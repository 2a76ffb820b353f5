"""Stage 3: LoRA SFT on the preferred responses of a D_train variant (TRL `SFTTrainer` + PEFT): the `-S` models.

The stage in four steps, the same in `train_sft` and on notebook 03's page: `begin_stage` (key, directory, done
before?), `sft_trainer` (the `SFTConfig`, the `LoraConfig`, the formatted rows, the held-out loss of the base
model), `trainer.train()`, `finish_sft` (the held-out loss after, the adapter, the manifest). What every training
stage shares is in `stages`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..common.params import Params
from .stages import (
    StageRun,
    begin_stage,
    finish_stage,
    fit_text,
    last_checkpoint,
    save_adapter,
    split_rows,
    stage_callbacks,
    train_loss,
)


def sft_config(params: Params, output_dir: Path):
    """The `SFTConfig` of the SFT stage: `params.sft.args` over the run's defaults, loss on the completion only."""
    from ..common.configs import stage_config

    return stage_config(
        params, "sft", output_dir, save_steps=10, eval_strategy="no", completion_only_loss=True, dataset_num_proc=None
    )


def sft_example(tok, row: dict, params: Params, max_length: int) -> dict:
    """A variant row as SFT trains on it: the prompt formatted as the run formats prompts (chat
    template, with the conversation so far), the preferred response as the completion."""
    from ..models.loading import format_prompt

    prompt = format_prompt(tok, row["prompt"], row["context"], params)
    p, c = fit_text(tok, prompt, row["chosen"], max_length)
    return {"prompt": p, "completion": c}


def sft_trainer(params: Params, run: StageRun, tok):
    """The `SFTTrainer` of a begun SFT stage: the base model, a LoRA adapter (`params.sft.lora`), the variant's
    training rows (prompt -> preferred response) and its held-out slice. Before returning it records the held-out
    loss of the base model (the fresh LoRA adapter is zero: this is the base model) in `run.metrics`."""
    from trl import SFTTrainer

    from ..common import distributed
    from ..common.configs import lora_config
    from ..common.report import atomic_write_json
    from ..models.loading import base_model_path, load_causal_lm

    args = sft_config(params, run.out / "checkpoints")
    max_len = args.max_length or 512
    train, evald = split_rows(
        run.ds, params.sft.eval_fraction, params.data_seed, params.sft.max_rows, params.sft.eval_max_rows
    )
    train = train.map(lambda r: sft_example(tok, r, params, max_len), remove_columns=train.column_names)
    if evald is not None:
        evald = evald.map(lambda r: sft_example(tok, r, params, max_len), remove_columns=evald.column_names)
    trainer = SFTTrainer(
        model=load_causal_lm(params, path=base_model_path(params)),
        args=args,
        train_dataset=train,
        eval_dataset=evald,
        processing_class=tok,
        peft_config=lora_config(params, "sft", "CAUSAL_LM"),
        callbacks=stage_callbacks("SFT", run.variant, run.out),
    )
    run.metrics.update({"train_rows": len(train), "eval_rows": len(evald) if evald is not None else 0})
    base_file = run.out / "base_eval.json"
    if evald is not None:
        have = base_file.is_file()
        distributed.barrier()  # every process decided before the main one writes
        if not have:
            loss = trainer.evaluate()["eval_loss"]  # every process: evaluate() gathers
            if distributed.is_main():
                atomic_write_json({"loss": loss}, base_file)
            distributed.barrier()
        run.metrics["base_eval_loss"] = json.loads(base_file.read_text())["loss"]
    return trainer


def finish_sft(params: Params, run: StageRun, trainer, result=None) -> dict:
    """After `trainer.train()`: the training loss, the held-out loss of the trained model, the adapter and the
    manifest (also into the stage store)."""
    run.metrics["train_loss"] = train_loss(trainer, result)
    if trainer.eval_dataset is not None:
        run.metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    save_adapter(trainer.model, run.out, trainer.processing_class)
    return finish_stage(params, run, trainer)


def train_sft(params: Params, variant: str, force: bool = False) -> dict:
    """LoRA SFT of the base model on (prompt -> preferred response) of `variant`, with the held-out loss before
    (= the base model: LoRA starts at zero) and after; returns the stage manifest."""
    from ..models.loading import base_model_path, load_tokenizer

    run = begin_stage(params, variant, "sft", force=force)
    if run.done:
        return run.done
    trainer = sft_trainer(params, run, load_tokenizer(base_model_path(params)))
    result = trainer.train(resume_from_checkpoint=last_checkpoint(run.out))
    return finish_sft(params, run, trainer, result)
