"""The runner: executes the numbered notebooks with papermill, one kernel per notebook (03 and 04
train every variant of the run in theirs; `per_variant` stages would start one per variant).

``python -m hetfb_utils run params/quickstart.yaml [-p key=value ...] [--only STAGE] [--force]``

* progress: which notebook / variant, elapsed, what is next;
* stops at the first failing notebook, printing the executed notebook's path and the error;
* resumable: a completed notebook leaves a marker keyed by the parameter sections it depends on
  (and the notebook's content); a re-run starts at the first incomplete one. Training inside a
  notebook resumes from its last Trainer checkpoint, evaluation from its per-metric cache;
* writes ``outputs/<run>/manifest.json`` (git commit, params, data hashes, package versions, seed,
  wall time per stage).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from .params import REPO_ROOT, Params, load_params

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    sections: tuple[str, ...]
    per_variant: bool = False


STAGES = [
    Stage("data", "01_data_union.ipynb", ("data", "seed", "cache_dir")),
    Stage("selection", "02_quality_diversity_selection.ipynb", ("data", "seed", "selection")),
    Stage("sft", "03_lora_sft.ipynb", ("data", "seed", "selection", "model", "sft")),
    Stage("rl", "04_reward_model_ppo.ipynb", ("data", "seed", "selection", "model", "sft", "reward", "rl")),
    Stage("eval", "05_bias_and_oasst_evaluation.ipynb",
          ("data", "seed", "selection", "model", "sft", "reward", "rl", "training", "evaluation")),
]
STAGE_NAMES = [s.name for s in STAGES]
# the code groups (`version.GROUPS`) whose change re-runs a stage's notebook
STAGE_CODE = {"data": ("data", "report"), "selection": ("selection", "report"),
              "sft": ("selection", "training", "report"), "rl": ("selection", "training", "report"),
              "eval": ("evaluation", "training", "report")}


class RunFailed(RuntimeError):
    pass


def _fmt(sec: float) -> str:
    m, s = divmod(int(sec), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _label(stage: Stage, variant: str | None) -> str:
    return stage.notebook + (f" [{variant}]" if variant else "")


def _marker(params: Params, stage: Stage, variant: str | None) -> Path:
    tag = stage.notebook.replace(".ipynb", "") + (f"-{variant}" if variant else "")
    return params.run_dir / "notebooks" / ".done" / f"{tag}.json"


def _stage_parts(params: Params, stage: Stage, variant: str | None) -> dict:
    """What a notebook run depends on: its params sections, the notebook, the package's code."""
    from .version import stage_code_version
    nb = (NOTEBOOK_DIR / stage.notebook).read_bytes()
    return {"params": params.digest(*stage.sections), "variant": variant, "notebook": hashlib.sha1(nb).hexdigest(),
            "code": stage_code_version(*STAGE_CODE[stage.name]),
            "variants": params.train_variants if stage.name in ("sft", "rl", "eval") else None}


def _stage_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _why(marker: Path, parts: dict, invalidated: bool) -> str:
    """Why a notebook runs again: nothing recorded, or which of its inputs changed."""
    if not marker.is_file():
        return "not run yet"
    old = json.loads(marker.read_text()).get("parts")
    if old is None:
        return "marker from an older kit"
    changed = [k for k in ("params", "notebook", "code", "variants") if old.get(k) != parts[k]]
    names = {"params": "params changed", "notebook": "notebook changed", "code": "hetfb_utils code changed",
             "variants": "variants changed"}
    return ", ".join(names[k] for k in changed) or ("an earlier stage re-ran" if invalidated else "forced")


def plan(params: Params, only: list[str] | None = None) -> list[tuple[Stage, str | None]]:
    steps = []
    for st in STAGES:
        if only and st.name not in only:
            continue
        for v in (params.train_variants if st.per_variant else [None]):
            steps.append((st, v))
    return steps


def kernel_config():
    """Config for the notebook kernels papermill starts: CurveZMQ transport encryption where pyzmq
    has it (ipykernel >= 7.3 otherwise warns at every kernel start that it runs over TCP without
    encryption); a plain config elsewhere."""
    import zmq
    from traitlets.config import Config
    return Config({"KernelManager": {"transport_encryption": "auto"}}) if zmq.has("curve") else Config()


def execute(params_file: str, overrides: list[str] | None = None, only: list[str] | None = None,
            force: bool = False, log=print) -> dict:
    """Run the notebooks; returns the run manifest. Raises RunFailed at the first failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from .report import atomic_write_json, git_commit, package_versions

    params = load_params(params_file, overrides)  # invalid params: error before anything is written
    if only:
        bad = sorted(set(only) - set(STAGE_NAMES))
        if bad:
            raise RunFailed(f"unknown stage(s) {bad}; stages are {STAGE_NAMES}")
    params_path = str(Path(params_file).resolve()) if Path(params_file).exists() else params_file
    steps = plan(params, only)
    run_dir = params.run_dir
    nb_out = run_dir / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    man_path = run_dir / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.is_file() else {}
    manifest.update({"run": params.run_name, "params_file": params_path, "overrides": overrides or [],
                     "params": params.model_dump(mode="json"), "seed": params.seed, "git": git_commit(),
                     "packages": package_versions()})
    manifest.setdefault("stages", {})
    t_run = time.time()
    invalidated = force
    kernels = kernel_config()
    from .progress import ENV, Watcher
    progress_file = nb_out / ".progress.json"      # the kernel (and its launches) inherit the variable
    log(f"hetfb run '{params.run_name}' -> {run_dir}  ({len(steps)} notebook runs)")
    with mock.patch.dict(os.environ, {ENV: str(progress_file)}):
        for i, (st, variant) in enumerate(steps, 1):
            label = _label(st, variant)
            marker, parts = _marker(params, st, variant), _stage_parts(params, st, variant)
            key = _stage_key(parts)
            done = marker.is_file() and json.loads(marker.read_text()).get("key") == key
            nxt = _label(*steps[i]) if i < len(steps) else "end"
            if done and not invalidated:
                log(f"[{i}/{len(steps)}] {label}: complete, skipped")
                continue
            why = "forced" if force else _why(marker, parts, invalidated)
            invalidated = True  # everything after a re-run stage runs again (inner caches skip unchanged work)
            out_nb = nb_out / (st.notebook.replace(".ipynb", f"-{variant}.ipynb") if variant else st.notebook)
            log(f"[{i}/{len(steps)}] {label}: running ({why}; elapsed {_fmt(time.time() - t_run)}; next: {nxt})")
            t0 = time.time()
            marker.unlink(missing_ok=True)
            try:
                with Watcher(progress_file, log):    # training step / evaluation model while it runs
                    pm.execute_notebook(str(NOTEBOOK_DIR / st.notebook), str(out_nb), kernel_name="python3",
                                        parameters={"params_file": params_path, "overrides": list(overrides or []),
                                                    "variant": variant, "force": bool(force)},
                                        cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False,
                                        config=kernels)
            except PapermillExecutionError as e:
                manifest["stages"][label] = {"status": "failed", "seconds": round(time.time() - t0, 1)}
                atomic_write_json(manifest, man_path)
                raise RunFailed(f"{label} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                                f"  executed notebook (with the traceback): {out_nb}") from None
            sec = time.time() - t0
            atomic_write_json({"key": key, "parts": parts, "seconds": round(sec, 1)}, marker)
            manifest["stages"][label] = {"status": "done", "seconds": round(sec, 1), "notebook": str(out_nb)}
            log(f"[{i}/{len(steps)}] {label}: done in {_fmt(sec)}")
    rep = run_dir / "data" / "selection_report.json"
    if rep.is_file():
        r = json.loads(rep.read_text())
        manifest["data_hashes"] = {k: v["content_hash"] for k, v in r["variants"].items()}
    u = run_dir / "data" / "union_report.json"
    if u.is_file():
        manifest["union_fingerprint"] = json.loads(u.read_text())["fingerprint"]
    # the run's wall time is the time its current outputs took (every stage as last executed), so a
    # re-run that skips everything does not overwrite it with its own second; that one is `last_invocation_s`
    labels = {_label(st, v) for st, v in plan(params)}  # the stages of these params only
    manifest["wall_time_s"] = round(sum(s["seconds"] for k, s in manifest["stages"].items()
                                        if k in labels and s.get("status") == "done"), 1)
    manifest["last_invocation_s"] = round(time.time() - t_run, 1)
    atomic_write_json(manifest, man_path)
    log(f"done in {_fmt(time.time() - t_run)}: tables in {run_dir / 'tables'}, figures in {run_dir / 'figures'}")
    return manifest


def train_stage(params: Params, stage: str, variant: str, force: bool = False):
    """One training stage in this process (used by notebooks and by `accelerate launch`)."""
    from . import rl, sft
    check_launch_here()
    fn = {"sft": sft.train_sft, "reward": rl.train_reward, "ppo": rl.train_ppo, "dpo": rl.train_dpo,
          "rl": rl.train_rl}[stage]
    return fn(params, variant, force)


def check_launch_here(config: dict | None = None, name: str = "this accelerate launch") -> None:
    """FSDP and DeepSpeed need GPUs: accelerate 1.15's FSDP plugin stops with 'There are currently no
    available devices found' on a CPU-only machine, and DeepSpeed's ZeRO needs CUDA. Say so, with
    the config that asked for it and what to use instead, before any process starts."""
    import torch
    kind = (config or {}).get("distributed_type") or (
        "FSDP" if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" else
        "DEEPSPEED" if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" else None)
    if kind in ("FSDP", "DEEPSPEED") and not torch.cuda.is_available():
        from .sft import TrainingError
        raise TrainingError(f"{name} asks for {kind}, which needs CUDA GPUs (none here). On CPU use "
                            "data parallel over gloo: training.accelerate_config: "
                            "params/accelerate/cpu_2proc.yaml, or training.launcher: inprocess.")


def accelerate_command(params: Params, stage: str, variant: str, params_file: str, overrides=(),
                       force: bool = False) -> list[str]:
    """The `accelerate launch` command line of a stage, after checking its config file."""
    import yaml

    from .sft import TrainingError
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if params.training.accelerate_config:
        cfg = Path(params.training.accelerate_config)
        cfg = cfg if cfg.is_absolute() else REPO_ROOT / cfg
        if not cfg.is_file():
            raise TrainingError(f"training.accelerate_config: '{params.training.accelerate_config}' not "
                                f"found; the configs shipped are in params/accelerate/ "
                                f"({', '.join(sorted(p.name for p in (REPO_ROOT / 'params/accelerate').glob('*.yaml')))})")
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
    from .sft import TrainingError, stage_dir
    cmd = accelerate_command(params, stage, variant, params_file, overrides, force)
    res = subprocess.run(cmd, cwd=REPO_ROOT)
    if res.returncode != 0:
        raise TrainingError(f"`accelerate launch` of stage '{stage}' on variant '{variant}' exited with "
                            f"{res.returncode}; its processes' tracebacks are above. Command: {' '.join(cmd)}")
    final = params.rl.algorithm if stage == "rl" else stage   # the stage whose manifest ends the run
    return json.loads((stage_dir(params, variant, final) / "manifest.json").read_text())
