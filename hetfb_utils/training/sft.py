"""Stage 3: LoRA SFT on the preferred responses of a D_train variant (TRL `SFTTrainer` + PEFT): the `-S`
models. What every training stage shares is in `stages`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..common.params import Params
from .stages import (
    begin_stage,
    fit_text,
    last_checkpoint,
    save_adapter,
    split_rows,
    stage_callbacks,
    train_loss,
    write_manifest,
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


def train_sft(params: Params, variant: str, force: bool = False) -> dict:
    """LoRA SFT of the base model on (prompt -> preferred response) of `variant`, with the held-out loss before
    (= the base model: LoRA starts at zero) and after; returns the stage manifest."""
    from trl import SFTTrainer

    from ..common.configs import lora_config
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer

    ds, key, out, done = begin_stage(params, variant, "sft", force=force)
    if done:
        return done
    started = time.time()
    path = base_model_path(params)
    tok = load_tokenizer(path)
    args = sft_config(params, out / "checkpoints")
    max_len = args.max_length or 512

    def fmt(r):
        return sft_example(tok, r, params, max_len)

    train, evald = split_rows(
        ds, params.sft.eval_fraction, params.data_seed, params.sft.max_rows, params.sft.eval_max_rows
    )
    train = train.map(fmt, remove_columns=train.column_names)
    evald = evald.map(fmt, remove_columns=evald.column_names) if evald is not None else None
    model = load_causal_lm(params, path=path)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evald,
        processing_class=tok,
        peft_config=lora_config(params, "sft", "CAUSAL_LM"),
        callbacks=stage_callbacks("SFT", variant, out),
    )
    metrics = {"train_rows": len(train), "eval_rows": len(evald) if evald is not None else 0}
    base_file = out / "base_eval.json"
    if evald is not None:
        from ..common import distributed

        have = base_file.is_file()
        distributed.barrier()  # every process decided before the main one writes
        if not have:  # before train(): the fresh LoRA has B = 0, so this is the base model
            from ..common.report import atomic_write_json

            loss = trainer.evaluate()["eval_loss"]  # every process: evaluate() gathers
            if distributed.is_main():
                atomic_write_json({"loss": loss}, base_file)
            distributed.barrier()
        metrics["base_eval_loss"] = json.loads(base_file.read_text())["loss"]
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    metrics["train_loss"] = train_loss(trainer, result)
    if evald is not None:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    save_adapter(trainer.model, out, tok)
    return write_manifest(params, variant, "sft", key, trainer, metrics, started)
