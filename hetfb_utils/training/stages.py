"""What every training stage shares: where a model lives, its key and manifest (base model, variant data
hash, params hash, the seeds, steps, metrics, wall time), skip-when-done, the stage store shared by runs,
resume from the last Trainer checkpoint, the stop on a non-finite loss, and the train / held-out split
of a variant (by whole groups).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ..common.errors import TrainingError
from ..common.params import Params

# A notice from inside the libraries that our code cannot avoid: transformers 5.23 deprecates
# `PreTrainedModel.is_gradient_checkpointing`, which trl 1.12 still reads (its PPOTrainer and
# `unwrap_model_for_generation`). Exactly that message is filtered.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# --------------------------------------------------------------------------- shared helpers
def stage_dir(params: Params, variant: str, stage: str) -> Path:
    """`<run>/models/<variant>/<stage>`."""
    return params.run_dir / "models" / variant / stage


def stage_key(params: Params, variant: str, stage: str, data_hash: str, parents: list[str] = ()) -> dict:
    """What a stage's model depends on: the stage, base model, data hash, seeds, its params (and precision), its
    parents' and the code the training stages import (`version.code_version("training")`): a fix to that code
    retrains the stage, in the run's directory as in the stage store."""
    from ..common.version import code_version

    section = {"sft": "sft", "reward": "reward", "ppo": "rl", "rloo": "rl", "dpo": "rl"}[stage]
    return {
        "code": code_version("training"),
        "stage": stage,
        "variant": variant,
        "base_model": params.model.name_or_path,
        "data_hash": data_hash,
        "seeds": {"data": params.data_seed, "training": params.training_seed},
        "params_hash": params.digest("model", section, "data_seed", "training_seed", "training_precision"),
        "parents": list(parents),
    }


def finished(params: Params, variant: str, stage: str, key: dict) -> dict | None:
    """The manifest of a completed stage with the same inputs, else None."""
    m = stage_dir(params, variant, stage) / "manifest.json"
    if not m.is_file():
        return None
    man = json.loads(m.read_text())
    return man if man.get("key") == key else None


def require(params: Params, variant: str, stage: str) -> dict:
    """The manifest of a trained stage, or one TrainingError saying to train it first."""
    m = stage_dir(params, variant, stage) / "manifest.json"
    if not m.is_file():
        raise TrainingError(f"stage '{stage}' of variant '{variant}' has not been trained ({m} missing): run it first")
    return json.loads(m.read_text())


@dataclasses.dataclass
class StageRun:
    """One training stage of one variant, begun: its data, key, directory, when it started, the metrics gathered
    so far, and `done`: the manifest of the same stage already trained (here or in the stage store), else None."""

    variant: str
    stage: str
    ds: object  # the variant as a `datasets.Dataset`
    key: dict
    out: Path
    done: dict | None
    started: float = dataclasses.field(default_factory=time.time)
    metrics: dict = dataclasses.field(default_factory=dict)


def begin_stage(
    params: Params, variant: str, stage: str, parents: tuple[str, ...] = (), force: bool = False, resumable: bool = True
) -> StageRun:
    """Common start of a training stage: the variant and its hash, the stage key (inputs + the
    parent stages' params), the manifest if already done, a clean directory when forced (or
    when the stage cannot resume)."""
    from ..common import distributed
    from ..common.memory import return_freed_memory
    from ..selection import content_hash, load_variant

    return_freed_memory()  # a training step's freed tensors go back to the system (common.memory)
    distributed.init()  # several processes: join the group before any file
    parent_hashes = [require(params, variant, s)["key"]["params_hash"] for s in parents]
    ds = load_variant(params, variant)
    key = stage_key(params, variant, stage, content_hash(ds.to_pandas()), parent_hashes)
    out = stage_dir(params, variant, stage)
    done = None if force else finished(params, variant, stage, key)
    if done is None and not force:
        done = reuse_stored(params, variant, stage, key)
    if done is None:
        started_key = out / "started.json"  # which inputs the checkpoints in `out` belong to
        with distributed.main_first():  # one process resets the directory, the others find it
            same_inputs = started_key.is_file() and json.loads(started_key.read_text()) == key
            if distributed.is_main():
                if out.exists() and (force or not resumable or not same_inputs):
                    shutil.rmtree(out)  # never resume a checkpoint of other data or params
                from ..common.report import atomic_write_json

                atomic_write_json(key, started_key)
        from transformers import set_seed  # LoRA / head initialisation: same seed, same model

        set_seed(params.training_seed)
    return StageRun(variant, stage, ds, key, out, done)


# --------------------------------------------------------------------------- the stage store
def store_dir(params: Params, key: dict) -> Path:
    """Where a finished stage is kept for every run: `<cache_dir>/stages/<hash>`, the hash of its
    inputs (the stage key without the variant's name: the data hash names the data; the key holds the training
    code's version)."""
    k = {kk: vv for kk, vv in key.items() if kk != "variant"}  # the key holds the training code's version
    h = hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()[:20]
    return params.cache_path / "stages" / h


def _copy_dir(src: Path, dst: Path) -> None:
    """Copy a directory so that `dst` appears complete or not at all."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "started.json"))
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def store_stage(params: Params, key: dict, out: Path) -> None:
    """Copy a finished stage into the stage store (when `training.reuse_stages`)."""
    if params.training.reuse_stages:
        dst = store_dir(params, key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        _copy_dir(out, dst)


def reuse_stored(params: Params, variant: str, stage: str, key: dict) -> dict | None:
    """A stage with the same inputs finished by any run: copied here, its manifest saying from
    where (`reused_from`). None when there is none or reuse is off."""
    from ..common import distributed
    from ..common.report import atomic_write_json

    src = store_dir(params, key)
    if not params.training.reuse_stages or not (src / "manifest.json").is_file():
        return None
    out = stage_dir(params, variant, stage)
    with distributed.main_first():
        if distributed.is_main():
            out.parent.mkdir(parents=True, exist_ok=True)
            _copy_dir(src, out)
            man = json.loads((out / "manifest.json").read_text())
            origin = man.get("reused_from") or {
                "run": man.get("run"),
                "variant": man.get("variant"),
                "created": man.get("created"),
            }
            man.update({"key": key, "variant": variant, "reused_from": {**origin, "store": str(src)}})
            atomic_write_json(man, out / "manifest.json")
    man = json.loads((out / "manifest.json").read_text())
    if distributed.is_main():
        print(
            f"{stage} [{variant}]: the same inputs were trained by run '{man['reused_from']['run']}' "
            f"({src}): reused, not retrained"
        )
    return man


def last_checkpoint(out: Path) -> str | None:
    """The stage's latest Trainer checkpoint, or None."""
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def save_adapter(model, out: Path, tok=None) -> None:
    """The trained adapter (and tokenizer), written by the main process only."""
    from ..common.distributed import is_main

    if is_main():
        model.save_pretrained(out)
        if tok is not None:
            tok.save_pretrained(out)


def release(trainer) -> None:
    """Drop a spent trainer's models and optimizer (after its adapter is saved): the stage's judgement loads its own
    models, and the trainer's would otherwise stay in memory beside them (a quickstart's peak went over 6 GB)."""
    import gc

    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:  # it holds the prepared models and optimizer too
        accelerator.free_memory()
    handler = getattr(trainer, "callback_handler", None)
    if handler is not None:  # it holds the model, optimizer and scheduler too, and the callbacks their models
        handler.model = handler.optimizer = handler.lr_scheduler = None
        handler.callbacks = [c for c in handler.callbacks if not hasattr(c, "points")]  # the held-out curve's
    for attr in (
        "model",
        "model_wrapped",
        "policy_model",
        "ref_model",
        "reward_model",
        "value_model",
        "optimizer",
        "lr_scheduler",
    ):
        if getattr(trainer, attr, None) is not None:
            try:
                setattr(trainer, attr, None)
            except AttributeError:  # a read-only property of some trainer
                pass
    gc.collect()


def finish_stage(params: Params, run: StageRun, trainer) -> dict:
    """`write_manifest` of a begun stage with the metrics it gathered."""
    return write_manifest(params, run.variant, run.stage, run.key, trainer, run.metrics, run.started)


def write_manifest(params: Params, variant: str, stage: str, key: dict, trainer, metrics: dict, started: float) -> dict:
    """The stage's manifest (every process returns it; the main process writes it, with the log
    history, and drops the checkpoints); the processes leave together. `trainer` None: a stage fitted
    without a Trainer (the reward model's score head)."""
    from ..common import distributed
    from ..common.precision import resolve as resolve_precision
    from ..common.report import atomic_write_json, provenance

    out = stage_dir(params, variant, stage)
    state = dataclasses.asdict(trainer.state) if trainer is not None else {"log_history": [], "global_step": 0}
    state["log_history"] = state["log_history"] + list(metrics.pop("_log", []))
    trainer_state = json.loads(json.dumps(state, default=str))
    log = trainer_state.get("log_history", [])
    man = {
        "key": key,
        "stage": stage,
        "variant": variant,
        "seed": params.training_seed,
        "seeds": params.seeds,
        "steps": trainer_state.get("global_step"),
        "world_size": distributed.world_size(),
        "precision": {"used": params.training_precision, "why": resolve_precision(params.training.precision)[1]},
        "metrics": metrics,
        "wall_time_s": round(time.time() - started, 1),
        **provenance(params),
    }
    if distributed.is_main():
        atomic_write_json(log, out / "log_history.json")
        atomic_write_json(man, out / "manifest.json")
        ck = out / "checkpoints"
        if ck.exists():
            shutil.rmtree(ck)
        store_stage(params, key, out)
    distributed.barrier()
    return man


def train_loss(trainer, result) -> float:
    """Mean training loss over every logged step, including those before a resume (the Trainer's
    own `training_loss` covers only the steps run since the last restart)."""
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    if losses:
        return float(sum(losses) / len(losses))
    return result.training_loss if result is not None else None


def stage_callbacks(stage: str, variant: str, out: Path) -> list:
    """What every training stage's Trainer gets: the stop on a non-finite loss, the progress line for the
    runner's console, and its curves as TensorBoard logs in `<stage dir>/tensorboard` (the main process;
    `%tensorboard --logdir outputs/<run>/models` in JupyterLab)."""
    from ..common.distributed import is_main
    from ..common.progress import callback

    out_cbs = [finite_loss_callback(stage, variant, out), callback(stage, variant)]
    if is_main():
        tb = tensorboard_callback(out / "tensorboard")
        if tb is not None:
            out_cbs.append(tb)
    return out_cbs


def tensorboard_callback(log_dir: Path):
    """transformers' `TensorBoardCallback` writing to `log_dir` (None when TensorBoard is not installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))


def finite_loss_callback(stage: str, variant: str, out: Path):
    """A callback that stops training with one clear error at the first non-finite loss or reward."""
    from transformers import TrainerCallback

    class StopOnNonFinite(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            for k in ("loss", "train_loss", "objective/scores", "loss/policy_avg"):
                v = (logs or {}).get(k)
                if v is not None and not math.isfinite(float(v)):
                    raise TrainingError(
                        f"{stage} on variant '{variant}' stopped: {k} = {v} at step "
                        f"{state.global_step}. Last good checkpoint kept in "
                        f"{out / 'checkpoints'}; lower the learning rate and re-run."
                    )

    return StopOnNonFinite()


def fit_text(tok, prompt: str, response: str, max_length: int) -> tuple[str, str]:
    """Truncate so tokens(prompt + response) <= max_length: the prompt keeps its end (the
    question), the response its beginning. Trainers would otherwise drop over-long rows."""
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    r_ids = tok(response, add_special_tokens=False).input_ids
    budget = max_length - 8
    if len(p_ids) + len(r_ids) <= budget:
        return prompt, response
    p_keep = min(len(p_ids), max(budget // 2, budget - len(r_ids)))
    r_keep = budget - p_keep
    prompt = tok.decode(p_ids[len(p_ids) - p_keep :]) if p_keep < len(p_ids) else prompt
    response = tok.decode(r_ids[:r_keep]) if r_keep < len(r_ids) else response
    return prompt, response


def split_groups(ds) -> list[str]:
    """Rows that must stay on one side of a train/eval split: the union's `group_id` (WinoBias and WinoGrande
    twins, OASST trees). With one twin trained on and the other held out, a model that memorises "this
    opening takes *she*" or "option X wins here" is pushed *below* chance on the held-out twin; an OASST tree's
    prompts share their conversation. Rows without a group (data made before the column existed) stand alone."""
    if "group_id" not in ds.column_names:
        return [str(i) for i in range(len(ds))]
    return [g if g else f"row\x00{i}" for i, g in enumerate(ds["group_id"])]


def split_rows(ds, fraction: float, seed: int, max_rows: int | None = None, eval_max_rows: int | None = None):
    """(train, eval) split of a variant by whole groups (`split_groups`), seeded; eval is None when
    fraction is 0 and holds at most `eval_max_rows` (the rest of the held-out rows are not trained on)."""
    if max_rows is not None and len(ds) > max_rows:
        ds = ds.shuffle(seed=seed).select(range(max_rows))
    n_eval = int(round(fraction * len(ds)))
    if n_eval == 0 or len(ds) - n_eval < 1:
        return ds, None
    groups = split_groups(ds)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = list(members)
    np.random.default_rng(seed).shuffle(order)
    held: list[int] = []
    for g in order:
        if len(held) >= n_eval:
            break
        held.extend(members[g])
    if len(held) >= len(ds):
        return ds, None
    held_set = set(held)
    train = ds.select([i for i in range(len(ds)) if i not in held_set])
    return train, ds.select(held[:eval_max_rows] if eval_max_rows is not None else held)


def preference_rows(ds, tok, params: Params, max_length: int):
    """prompt (formatted), chosen, rejected as plain strings (shared by reward model and DPO)."""
    from ..models.loading import format_prompt

    def fmt(r):
        prompt = format_prompt(tok, r["prompt"], r["context"], params)
        p, c = fit_text(tok, prompt, r["chosen"], max_length)
        p2, rj = fit_text(tok, prompt, r["rejected"], max_length)
        p = p if len(p) <= len(p2) else p2
        return {"prompt": p, "chosen": c, "rejected": rj}

    return ds.map(fmt, remove_columns=ds.column_names)
