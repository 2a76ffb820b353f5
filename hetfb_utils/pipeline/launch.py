"""Launching a training stage: in this process, or under `accelerate launch` (several processes or GPUs,
DeepSpeed, FSDP from params/accelerate/), with the checks that turn a launch that cannot work into one
clear error before any process trains."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ..common.errors import TrainingError
from ..common.params import REPO_ROOT, Params

CPU_2PROC = "params/accelerate/cpu_2proc.yaml"


def train_stage(params: Params, stage: str, variant: str, force: bool = False):
    """One training stage in this process (used by notebooks and by `accelerate launch`): `sft`, `reward`,
    `ppo`, `rloo`, `dpo`, or `rl` (the second stage `rl.algorithm` names). Returns the stage's manifest."""
    from ..training import reward, rl, sft

    check_launch_here()
    fn = {
        "sft": sft.train_sft,
        "reward": reward.train_reward,
        "ppo": rl.train_ppo,
        "rloo": rl.train_rloo,
        "dpo": rl.train_dpo,
        "rl": rl.train_rl,
    }[stage]
    return fn(params, variant, force)


def check_launch_here(config: dict | None = None, name: str = "this accelerate launch") -> None:
    """FSDP and DeepSpeed need GPUs: accelerate 1.15's FSDP plugin stops with 'There are currently no
    available devices found' on a CPU-only machine, and DeepSpeed's ZeRO needs CUDA. Say so, with
    the config that asked for it and what to use instead, before any process starts."""
    import torch

    kind = (config or {}).get("distributed_type") or (
        "FSDP"
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
        else "DEEPSPEED"
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
        else None
    )
    if kind in ("FSDP", "DEEPSPEED") and not torch.cuda.is_available():
        raise TrainingError(
            f"{name} asks for {kind}, which needs CUDA GPUs (none here). On CPU use "
            f"data parallel over gloo: training.accelerate_config: {CPU_2PROC}, or "
            "training.launcher: inprocess."
        )
    asked = _processes_asked()
    if (
        config is None
        and asked > 1
        and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
        and int(os.environ.get("WORLD_SIZE", "1")) == 1
    ):
        raise TrainingError(
            f"`accelerate launch --cpu --num_processes {asked}` started one process, not {asked}: "
            "accelerate runs several CPU processes only through MPI (mpirun), so this would "
            "train with world size 1 (and one thread). Launch with the torchrun-over-gloo config "
            f"instead: accelerate launch --config_file {CPU_2PROC} -m hetfb_utils train ..."
        )


def _processes_asked() -> int:
    """`--num_processes N` of the `accelerate launch` that started this process (its parent's command line);
    1 when there is none or it cannot be read."""
    try:
        import psutil

        cmd = " ".join(psutil.Process().parent().cmdline())
    except Exception:  # noqa: BLE001 - no parent to read: nothing to check
        return 1
    if "accelerate" not in cmd:
        return 1
    m = re.search(r"--num[_-]processes[= ](\d+)", cmd)
    return int(m.group(1)) if m else 1


def accelerate_command(
    params: Params, stage: str, variant: str, params_file: str, overrides=(), force: bool = False
) -> list[str]:
    """The `accelerate launch` command line of a stage, after checking its config file."""
    import yaml

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if params.training.accelerate_config:
        cfg = Path(params.training.accelerate_config)
        cfg = cfg if cfg.is_absolute() else REPO_ROOT / cfg
        if not cfg.is_file():
            raise TrainingError(
                f"training.accelerate_config: '{params.training.accelerate_config}' not "
                f"found; the configs shipped are in params/accelerate/ "
                f"({', '.join(sorted(p.name for p in (REPO_ROOT / 'params/accelerate').glob('*.yaml')))})"
            )
        check_launch_here(yaml.safe_load(cfg.read_text()) or {}, f"training.accelerate_config '{cfg.name}'")
        cmd += ["--config_file", str(cfg)]
    cmd += ["-m", "hetfb_utils", "train", stage, str(params_file), "--variant", variant]
    for o in overrides:
        cmd += ["-p", o]
    if force:
        cmd.append("--force")
    return cmd


def run_training(params: Params, stage: str, variant: str, params_file: str, overrides=(), force=False):
    """Run a training stage in-process, or through `accelerate launch` when
    `training.launcher: accelerate` (several processes / GPUs, DeepSpeed, FSDP from params/accelerate/)."""
    if params.training.launcher == "inprocess":
        return train_stage(params, stage, variant, force)
    if stage == "rl" and params.rl.algorithm == "none":
        return []
    from ..training.stages import stage_dir

    cmd = accelerate_command(params, stage, variant, params_file, overrides, force)
    res = subprocess.run(cmd, cwd=REPO_ROOT)
    if res.returncode != 0:
        raise TrainingError(
            f"`accelerate launch` of stage '{stage}' on variant '{variant}' exited with "
            f"{res.returncode}; its processes' tracebacks are above. Command: {' '.join(cmd)}"
        )
    final = params.rl.algorithm if stage == "rl" else stage  # the stage whose manifest ends the run
    return json.loads((stage_dir(params, variant, final) / "manifest.json").read_text())
