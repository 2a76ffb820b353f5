"""The runner: executes the numbered notebooks with papermill, one kernel per notebook (03 and 04
train every variant of the run in theirs).

``python -m hetfb_utils run params/quickstart.yaml [-p key=value ...] [--only STAGE] [--force]``

* progress: which notebook, why it runs, elapsed, what is next; the training step or the model being
  evaluated while a notebook runs;
* stops at the first failing notebook, printing the executed notebook's path and the error;
* resumable: a completed notebook leaves a marker keyed by what it depends on (the params sections,
  the notebook, the package's code, the content of every data file it reads); a re-run starts at the
  first incomplete one and says why it runs (`data changed`, `params changed`, ...). Training inside a
  notebook resumes from its last Trainer checkpoint, evaluation from its per-metric cache;
* shared by runs: notebooks 01-02 (union, selection) of another run with the same inputs are copied,
  not re-run (a seed group trains on one data draw); their manifest entry says from which run;
* writes ``outputs/<run>/manifest.json`` after every notebook (git commit, params, the three seeds, data
  file hashes, package versions, wall time per stage), so a kill loses no finished stage's record.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from ..common.errors import RunFailed
from ..common.params import REPO_ROOT, Params, load_params
from .launch import accelerate_command, check_launch_here, run_training, train_stage  # noqa: F401 - public names
from .stage_store import reuse_outputs, store_outputs, sweep_temporaries

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Stage:
    """A notebook stage: its name, notebook, the params sections it depends on."""

    name: str
    notebook: str
    sections: tuple[str, ...]
    per_variant: bool = False


# the params sections each notebook depends on (seeds resolved: the `data` section holds the data seed,
# `training_seed` is the training seed alone, `evaluation` holds the evaluation seed)
STAGES = [
    Stage("data", "01_data_union.ipynb", ("data", "cache_dir")),
    Stage("selection", "02_quality_diversity_selection.ipynb", ("data", "selection")),
    Stage("sft", "03_lora_sft.ipynb", ("data", "selection", "model", "sft", "training_seed", "training_precision")),
    Stage(
        "rl",
        "04_reward_model_ppo.ipynb",
        ("data", "selection", "model", "sft", "reward", "rl", "training_seed", "training_precision"),
    ),
    Stage(
        "eval",
        "05_bias_and_oasst_evaluation.ipynb",
        ("data", "selection", "model", "sft", "reward", "rl", "training", "evaluation"),
    ),
]
SHARED_STAGES = ("data", "selection")  # outputs another run with the same inputs may hand over
STAGE_NAMES = [s.name for s in STAGES]
# the stage keys (`version.ENTRIES`) a notebook's marker includes besides its own imports (`version.notebook_version`)
STAGE_CODE = {
    "data": ("data",),
    "selection": ("selection",),
    "sft": ("training",),
    "rl": ("training",),
    "eval": ("evaluation",),
}


def _fmt(sec: float) -> str:
    m, s = divmod(int(sec), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _label(stage: Stage, variant: str | None) -> str:
    return stage.notebook + (f" [{variant}]" if variant else "")


def _marker(params: Params, stage: Stage, variant: str | None) -> Path:
    tag = stage.notebook.replace(".ipynb", "") + (f"-{variant}" if variant else "")
    return params.run_dir / "notebooks" / ".done" / f"{tag}.json"


def _data_files(params: Params, stage: Stage) -> dict | None:
    """The data files a notebook reads, with their content hashes (stage 1: the sources; stage 5: the
    evaluation sets); the later stages read the run's own outputs."""
    from .. import data

    if stage.name == "data":
        return data.input_files(params)
    if stage.name == "eval":
        from ..evaluation.registry import eval_files

        return eval_files(params)
    return None


def _stage_parts(params: Params, stage: Stage, variant: str | None) -> dict:
    """What a notebook run depends on: its params sections, the notebook, the package's code, the
    content of the data files it reads."""
    from ..common.version import notebook_version, stage_code_version

    nb = (NOTEBOOK_DIR / stage.notebook).read_bytes()
    return {
        "params": params.digest(*stage.sections),
        "variant": variant,
        "notebook": hashlib.sha1(nb).hexdigest(),
        "code": stage_code_version(*STAGE_CODE[stage.name]) + notebook_version(NOTEBOOK_DIR / stage.notebook),
        "variants": params.train_variants if stage.name in ("sft", "rl", "eval") else None,
        "data_files": _data_files(params, stage),
    }


def _stage_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _why(marker: Path, parts: dict, invalidated: bool) -> str:
    """Why a notebook runs again: nothing recorded, or which of its inputs changed."""
    if not marker.is_file():
        return "not run yet"
    old = json.loads(marker.read_text()).get("parts")
    if old is None:
        return "marker from an older kit"
    changed = [k for k in ("params", "notebook", "code", "variants", "data_files") if old.get(k) != parts[k]]
    names = {
        "params": "params changed",
        "notebook": "notebook changed",
        "code": "hetfb_utils code changed",
        "variants": "variants changed",
        "data_files": "data changed",
    }
    return ", ".join(names[k] for k in changed) or ("an earlier stage re-ran" if invalidated else "forced")


def plan(params: Params, only: list[str] | None = None) -> list[tuple[Stage, str | None]]:
    """The notebook runs of an invocation: (stage, variant) in order, `only` stages when given."""
    steps = []
    for st in STAGES:
        if only and st.name not in only:
            continue
        for v in params.train_variants if st.per_variant else [None]:
            steps.append((st, v))
    return steps


def kernel_config():
    """Config for the notebook kernels papermill starts: CurveZMQ transport encryption where pyzmq
    has it (ipykernel >= 7.3 otherwise warns at every kernel start that it runs over TCP without
    encryption); a plain config elsewhere."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto"}}) if zmq.has("curve") else Config()


def execute(
    params_file: str, overrides: list[str] | None = None, only: list[str] | None = None, force: bool = False, log=print
) -> dict:
    """Run the notebooks; returns the run manifest. Raises RunFailed at the first failure."""
    params = load_params(params_file, overrides)  # invalid params: error before anything is written
    params.check_output_root()
    if only:
        bad = sorted(set(only) - set(STAGE_NAMES))
        if bad:
            raise RunFailed(f"unknown stage(s) {bad}; stages are {STAGE_NAMES}")
    params_path = str(Path(params_file).resolve()) if Path(params_file).exists() else params_file
    steps = plan(params, only)
    run_dir = params.run_dir
    nb_out = run_dir / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    removed = sweep_temporaries(params)
    if removed:
        log(f"removed {removed} temporary file(s) an interrupted run left behind")
    run = _Run(params, params_path, overrides or [], force, log)
    log(f"hetfb run '{params.run_name}' -> {run_dir}  ({len(steps)} notebook runs)")
    from ..common.progress import ENV

    with mock.patch.dict(os.environ, {ENV: str(nb_out / ".progress.json")}):  # the kernels inherit it
        for i, (st, variant) in enumerate(steps, 1):
            run.step(i, steps, st, variant)
    return run.finish()


class _Run:
    """One invocation of `execute`: the manifest (written after every notebook) and each step's decision."""

    def __init__(self, params: Params, params_path: str, overrides: list[str], force: bool, log):
        from ..common.report import git_commit, package_versions
        from ..common.version import code_version

        self.params, self.params_path, self.overrides, self.force, self.log = params, params_path, overrides, force, log
        self.man_path = params.run_dir / "manifest.json"
        self.manifest = _read_manifest(self.man_path)
        self.manifest.update(
            {
                "run": params.run_name,
                "params_file": params_path,
                "overrides": overrides,
                "params": params.model_dump(mode="json"),
                "seed": params.seed,
                "seeds": params.seeds,
                "git": git_commit(),
                "code": code_version(),
                "packages": package_versions(),
            }
        )
        self.manifest.setdefault("stages", {})
        self.manifest.setdefault("inputs", {})
        self.t0, self.invalidated = time.time(), force
        self.measured: set[str] = set()
        self.kernels = kernel_config()

    def save(self) -> None:
        """Write the manifest (after every notebook)."""
        from ..common.report import atomic_write_json

        atomic_write_json(self.manifest, self.man_path)

    def step(self, i: int, steps: list, st: Stage, variant: str | None) -> None:
        """Run one notebook when its inputs changed (or reuse another run's identical outputs), record it, say why."""
        params, log = self.params, self.log
        label = _label(st, variant)
        marker, parts = _marker(params, st, variant), _stage_parts(params, st, variant)
        key = _stage_key(parts)
        if parts["data_files"] is not None:
            self.manifest["inputs"][st.name] = parts["data_files"]
        nxt = _label(*steps[i]) if i < len(steps) else "end"
        old = json.loads(marker.read_text()) if marker.is_file() else {}
        if old.get("key") == key and not self.invalidated:
            log(f"[{i}/{len(steps)}] {label}: complete, skipped")
            self.manifest["stages"].setdefault(
                label, {"status": "done", "seconds": old.get("seconds"), "notebook": str(self._out_nb(st, variant))}
            )
            self.save()
            return
        why = "forced" if self.force else _why(marker, parts, self.invalidated)
        marker.unlink(missing_ok=True)
        if st.name in SHARED_STAGES and not self.force and not self.invalidated:
            origin = reuse_outputs(params, st, key, self._out_nb(st, variant))
            if origin is not None:
                from ..common.report import atomic_write_json

                atomic_write_json({"key": key, "parts": parts, "seconds": 0.0, "reused_from": origin}, marker)
                self.manifest["stages"][label] = {
                    "status": "done",
                    "seconds": 0.0,
                    "reused_from": origin,
                    "notebook": str(self._out_nb(st, variant)),
                }
                self.save()
                log(
                    f"[{i}/{len(steps)}] {label}: the same inputs were run by '{origin['run']}': its outputs "
                    f"copied ({why})"
                )
                return
        self.invalidated = True  # everything after a re-run stage runs again (inner caches skip unchanged work)
        if "machine" not in self.measured:
            self.manifest["machine"] = machine_facts(params)
            self.measured.add("machine")
        log(f"[{i}/{len(steps)}] {label}: running ({why}; elapsed {_fmt(time.time() - self.t0)}; next: {nxt})")
        sec = self._execute(st, variant, label)
        from ..common.report import atomic_write_json

        atomic_write_json({"key": key, "parts": parts, "seconds": round(sec, 1)}, marker)
        self.manifest["stages"][label] = {
            "status": "done",
            "seconds": round(sec, 1),
            "notebook": str(self._out_nb(st, variant)),
        }
        self.save()
        if st.name in SHARED_STAGES:
            store_outputs(params, st, key, self._out_nb(st, variant))
        log(f"[{i}/{len(steps)}] {label}: done in {_fmt(sec)}")

    def _out_nb(self, st: Stage, variant: str | None) -> Path:
        name = st.notebook.replace(".ipynb", f"-{variant}.ipynb") if variant else st.notebook
        return self.params.run_dir / "notebooks" / name

    def _execute(self, st: Stage, variant: str | None, label: str) -> float:
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        from ..common.progress import ENV, Watcher

        out_nb, t0 = self._out_nb(st, variant), time.time()
        given = {"params_file": self.params_path, "overrides": list(self.overrides), "variant": variant}
        given["force"] = bool(self.force)
        declared = pm.inspect_notebook(str(NOTEBOOK_DIR / st.notebook))  # the notebook's parameters cell
        try:
            with Watcher(Path(os.environ[ENV]), self.log):  # training step / evaluation model while it runs
                pm.execute_notebook(
                    str(NOTEBOOK_DIR / st.notebook),
                    str(out_nb),
                    kernel_name="python3",
                    parameters={k: v for k, v in given.items() if k in declared},
                    cwd=str(NOTEBOOK_DIR),
                    progress_bar=False,
                    log_output=False,
                    config=self.kernels,
                )
        except PapermillExecutionError as e:
            self.manifest["stages"][label] = {"status": "failed", "seconds": round(time.time() - t0, 1)}
            self.save()
            raise RunFailed(
                f"{label} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                f"  executed notebook (with the traceback): {out_nb}"
            ) from None
        return time.time() - t0

    def finish(self) -> dict:
        """The manifest's totals, written; the last line the console shows."""
        params, manifest = self.params, self.manifest
        rep = params.run_dir / "data" / "selection_report.json"
        if rep.is_file():
            r = json.loads(rep.read_text())
            manifest["data_hashes"] = {k: v["content_hash"] for k, v in r["variants"].items()}
        u = params.run_dir / "data" / "union_report.json"
        if u.is_file():
            manifest["union_fingerprint"] = json.loads(u.read_text())["fingerprint"]
        # the run's wall time is the time its current outputs took (every stage as last executed), so a
        # re-run that skips everything does not overwrite it with its own second; that one is `last_invocation_s`
        labels = {_label(st, v) for st, v in plan(params)}  # the stages of these params only
        manifest["wall_time_s"] = round(
            sum(
                s.get("seconds") or 0
                for k, s in manifest["stages"].items()
                if k in labels and s.get("status") == "done"
            ),
            1,
        )
        manifest["last_invocation_s"] = round(time.time() - self.t0, 1)
        self.save()
        self.log(
            f"done in {_fmt(time.time() - self.t0)}: tables in {params.run_dir / 'tables'}, figures in "
            f"{params.run_dir / 'figures'}"
        )
        return manifest


def machine_facts(params: Params) -> dict:
    """What the run's timings are to be read against: cores, processor, torch threads, the GPU, and the base
    model's forward FLOP rate measured now (a few forward passes)."""
    import platform

    import torch
    from transformers.utils import logging as hf_logging

    from ..models.speed import forward_flop_rate

    hf_logging.disable_progress_bar()  # the runner's console shows the notebooks' progress, not a weight loader's
    facts = {
        "cores": os.cpu_count(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        facts.update(forward_flop_rate(params))
    except Exception as e:  # noqa: BLE001 - a model that does not load fails its stage with the reason, not here
        facts["forward_gflops"] = None
        facts["forward_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    return facts


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), None)


def _read_manifest(path: Path) -> dict:
    """The run's manifest so far ({} when there is none, or when an interrupted write left it unreadable:
    the markers still say which stages are done, and their records are rebuilt from them)."""
    if not path.is_file():
        return {}
    try:
        man = json.loads(path.read_text())
    except (ValueError, OSError):
        return {}
    return man if isinstance(man, dict) else {}
