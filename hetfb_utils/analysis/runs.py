"""Finished runs read back for comparison: the run directory's `manifest.json` (its params) and
`eval/results.json` (every model's results with per-item values). A damaged or foreign run is one
`RunReadError` naming the file and what is wrong, never a traceback."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ParamsError, RunReadError
from ..common.params import Params, load_params

SEED_SUFFIX = re.compile(r"-s\d+$")


@dataclass
class Run:
    """A finished run read back: its name, directory, params, evaluation results and manifest."""

    name: str
    dir: Path
    params: Params
    results: list[dict]
    manifest: dict | None = None

    @property
    def seed(self) -> int:
        """The training seed: what tells the runs of a seed group apart."""
        return self.params.training_seed

    def models(self) -> dict[str, dict]:
        """Model name -> its result, for the models that were evaluated without error."""
        return {r["model"]: r for r in self.results if "error" not in r}


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunReadError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); the {what} "
            "was cut short (an interrupted write?) or edited. Re-run the stage that writes it"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunReadError(f"{path}: cannot be read ({e})") from None


def load_run(where: str | Path) -> Run:
    """A run directory (with manifest.json) or a params file (its `outputs/<run_name>`)."""
    p = Path(where)
    if not p.exists() and p.suffix not in (".yaml", ".yml") and (len(p.parts) > 1 or str(where).endswith("/")):
        raise RunReadError(
            f"{p}: no such run directory. Give a finished run's directory (e.g. outputs/quickstart, which holds "
            "manifest.json), or a params file"
        )
    if p.is_dir():
        man_path = p / "manifest.json"
        if not man_path.is_file():
            raise RunReadError(
                f"{p} is not a run directory (no manifest.json): give a run directory such as "
                "outputs/quickstart, or its params file"
            )
        man = _read_json(man_path, "run manifest")
        if not isinstance(man, dict) or not isinstance(man.get("params"), dict):
            raise RunReadError(f"{man_path}: no `params` mapping in it: not a manifest this kit wrote")
        try:
            params = load_params(raw=man["params"])
        except ParamsError as e:
            first = str(e).splitlines()[1:2]
            raise RunReadError(
                f"{man_path}: its params do not fit this kit's schema (written by another version of "
                f"the kit?): {first[0].strip() if first else e}. Re-run it with this version, or "
                "compare it with the version that wrote it"
            ) from None
        run_dir = p
    else:
        params = load_params(where)
        run_dir = params.run_dir
        man_path = run_dir / "manifest.json"
        man = _read_json(man_path, "run manifest") if man_path.is_file() else {}
    res = run_dir / "eval" / "results.json"
    if not res.is_file():
        raise RunReadError(
            f"run '{params.run_name}' has no evaluation results ({res}): run its evaluation first "
            "(`python -m hetfb_utils run <params> --only eval`)"
        )
    results = _read_json(res, "evaluation results file")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "model" in r for r in results):
        raise RunReadError(f"{res}: expected a list of model results (each with a `model` name)")
    return Run(params.run_name, run_dir, params, results, man if isinstance(man, dict) else {})


def labels(runs: list[Run]) -> list[str]:
    """Run names, made unique (the same run given twice compares as `name`, `name_2`)."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        out.append(r.name if seen[r.name] == 1 else f"{r.name}_{seen[r.name]}")
    return out


def recipe_signature(params: Params) -> str:
    """Everything that makes a run's recipe (seeds resolved), without its name, its locations and its
    training seed: runs with the same signature differ only in which model training happened to produce."""
    d = params.resolved_dump()
    for k in ("run_name", "output_root", "cache_dir", "seed", "training_seed"):
        d.pop(k, None)
    d["training"].pop("seed", None)
    return json.dumps(d, sort_keys=True)


@dataclass
class SeedGroup:
    """Runs of one recipe that differ only in `training.seed` (one run: a group of one seed)."""

    label: str
    runs: list[Run]
    run_labels: list[str]

    @property
    def seeds(self) -> list[int]:
        """The training seeds of the group's runs, in order."""
        return [r.seed for r in self.runs]

    @property
    def k(self) -> int:
        """How many training seeds (runs) the group has."""
        return len(self.runs)

    def models(self) -> list[str]:
        """The models any run of the group evaluated, in their order."""
        return list(dict.fromkeys(m for r in self.runs for m in r.models()))

    def varies(self) -> dict[str, list]:
        """What else differs between the runs of the group besides the training seed (`run_facts`): field ->
        the values seen, for the fields with more than one. Empty: the seeds are the only difference recorded."""
        facts = [run_facts(r) for r in self.runs]
        keys = dict.fromkeys(k for f in facts for k in f)
        out = {}
        for k in keys:
            vals = list(dict.fromkeys(json.dumps(f.get(k), sort_keys=True) for f in facts))
            if len(vals) > 1:
                out[k] = [json.loads(v) for v in vals]
        return out


def run_facts(run: Run) -> dict:
    """What a run's models depend on besides its params, as its manifest records it: the code (git commit and
    package hash), the packages, the machine (processor, cores, torch threads) and whether its trained stages
    were copied from another run."""
    man = run.manifest or {}
    machine = man.get("machine") or {}
    reused = sorted(
        {
            json.loads(m.read_text()).get("reused_from", {}).get("run") or ""
            for m in run.dir.glob("models/*/*/manifest.json")
        }
        - {""}
    )
    return {
        "code": man.get("code") or man.get("git"),  # the package's code hash (older manifests: the commit)
        "packages": man.get("packages"),
        "processor": machine.get("processor"),
        "cores": machine.get("cores"),
        "torch_threads": machine.get("torch_threads"),
        "stages_copied_from": reused,
    }


def relative(path: Path) -> str:
    """A path as a reader should see it: relative to the repository (or the working directory), never this
    machine's absolute path."""
    from ..common.params import REPO_ROOT

    path = Path(path).resolve()
    for root in (REPO_ROOT, Path.cwd()):
        try:
            return str(path.relative_to(root.resolve()))
        except ValueError:
            continue
    return path.name


def code_line(man: dict) -> str:
    """Which code produced a run: its git commit and the hash of the package's code, and whether that code is
    the code at HEAD now (the hash compares the code itself, so a run made before a documentation-only commit
    still counts as HEAD's code)."""
    from ..common.report import git_commit
    from ..common.version import code_version

    head, now = git_commit(), code_version()
    git, code = (man or {}).get("git", "?"), (man or {}).get("code")
    if code is None:
        same = "code hash not recorded"
    elif code == now:
        same = "the code at HEAD" if git.split("+")[0] == head.split("+")[0] else f"the same code as HEAD {head}"
    else:
        same = f"**not** the code at HEAD ({head})"
    return f"git {git} (code {code or '?'}: {same})"


def seed_groups(runs: list[Run]) -> list[SeedGroup]:
    """The runs grouped by recipe (in the order given; one run per training seed)."""
    groups: dict[str, SeedGroup] = {}
    for lab, r in zip(labels(runs), runs):
        sig = recipe_signature(r.params)
        g = groups.setdefault(sig, SeedGroup(SEED_SUFFIX.sub("", r.name), [], []))
        if r.seed in g.seeds:
            continue  # the same training seed twice: one model, counted once
        g.runs.append(r)
        g.run_labels.append(lab)
    names = [g.label for g in groups.values()]
    for i, g in enumerate(groups.values()):
        if names.count(g.label) > 1:
            g.label = f"{g.label}#{i + 1}"
    return list(groups.values())
