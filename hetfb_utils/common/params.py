"""Parameter files: one validated schema (pydantic) for every stage.

A params file is YAML. It may ``extends: other.yaml`` (resolved relative to the file), so a new
mix is a short diff; ``-p key.sub=value`` overrides a single key from the command line. The
training sections pass their ``args`` straight to the TRL config dataclass of that stage
(``SFTConfig``, ``RewardConfig``, ``PPOConfig``, ``DPOConfig``) and their ``lora`` to PEFT's
``LoraConfig``; their keys are checked against those dataclasses, so a typo is an error that
names the key, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .errors import ParamsError
from .locations import data_dir
from .params_files import (
    PARAMS_DIR,
    REPO_ROOT,
    apply_overrides,
    parse_override,
    read_yaml,
    resolve_params_path,
    resolve_source_paths,
)
from .sections import SEED_MAX, DataParams, EvalParams, ModelParams, SelectionParams, SourceSpec, Strict, TrainingParams
from .stage_sections import RewardParams, RLParams, SFTParams

__all__ = [
    "PARAMS_DIR",
    "REPO_ROOT",
    "Params",
    "ParamsError",
    "SourceSpec",
    "data_dir",
    "load_params",
    "parse_override",
    "resolve_params_path",
    "variant_name",
    "STRATEGY_PREFIX",
]
RUN_NAME_MAX = 100  # leaves room for the '-s<seed>' of seed runs and the files below a run


class Params(Strict):
    """A params file, validated: data, selection, model, sft, reward, rl, training and evaluation sections, the
    seeds, the output and cache locations; derived seeds, paths and digests."""

    run_name: str = Field(
        description="Outputs go to <output_root>/<run_name>/: a plain name (letters, digits, '.', '_', '-'), no path."
    )
    seed: int = Field(
        42, ge=0, le=SEED_MAX, description="Default of `data.seed`, `training.seed` and `evaluation.seed`."
    )
    output_root: str = Field("outputs", description="Relative paths are relative to the repository.")
    cache_dir: str | None = Field(
        None,
        description="Cache for converted data, embeddings, the "
        "materialised base model. null = $HETFB_CACHE or ~/.cache/hetfb.",
    )
    data: DataParams
    selection: SelectionParams = Field(default_factory=SelectionParams)
    model: ModelParams = Field(default_factory=ModelParams)
    sft: SFTParams = Field(default_factory=SFTParams)
    reward: RewardParams = Field(default_factory=RewardParams)
    rl: RLParams = Field(default_factory=RLParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    evaluation: EvalParams = Field(default_factory=EvalParams)

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError(
                f"run_name must be a plain name (letters, digits, '.', '_', '-'; no '/' or "
                f"'..'), got {v!r}: the run writes to <output_root>/<run_name>/. Use "
                "output_root to choose the directory"
            )
        if len(v) > RUN_NAME_MAX:
            raise ValueError(
                f"run_name is {len(v)} characters long; at most {RUN_NAME_MAX} (it names a directory, "
                "and the files below it add their own names)"
            )
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        names = [s.name for s in self.data.sources]
        if self.selection.wino_variant and self.selection.wino_source not in names:
            raise ValueError(
                f"selection.wino_source '{self.selection.wino_source}' is not a source "
                f"name {names}; set it, or selection.wino_variant: false"
            )
        if self.training.variants:
            unknown = sorted(set(self.training.variants) - set(self.variant_names))
            if unknown:
                raise ValueError(f"training.variants {unknown} are not built; built variants: {self.variant_names}")
        if self.rl.variants:
            unknown = sorted(set(self.rl.variants) - set(self.train_variants))
            if unknown:
                raise ValueError(f"rl.variants {unknown} are not trained; trained variants: {self.train_variants}")
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def data_seed(self) -> int:
        """The data draw's seed (`data.seed`, else `seed`)."""
        return self.seed if self.data.seed is None else self.data.seed

    @property
    def training_seed(self) -> int:
        """The training run's seed (`training.seed`, else `seed`)."""
        return self.seed if self.training.seed is None else self.training.seed

    @property
    def eval_seed(self) -> int:
        """The evaluation items' and bootstrap's seed (`evaluation.seed`, else `seed`)."""
        return self.seed if self.evaluation.seed is None else self.evaluation.seed

    @property
    def training_precision(self) -> str:
        """`training.precision` resolved on this machine: `fp32` or `bf16` (`common.precision`)."""
        from .precision import resolve

        return resolve(self.training.precision)[0]

    @property
    def seeds(self) -> dict[str, int]:
        """The three seeds as resolved: what manifests, table stamps and stage keys record."""
        return {"data": self.data_seed, "training": self.training_seed, "evaluation": self.eval_seed}

    def check_output_root(self) -> None:
        """The run directory can be made and written: one ParamsError naming `output_root` otherwise."""
        root = self.run_dir.parent
        probe = next((p for p in (root, *root.parents) if p.exists()), None)
        if probe is not None and not probe.is_dir():
            raise ParamsError(
                f"output_root '{self.output_root}': {probe} is a file, not a directory. Point "
                "output_root at a directory (it is created when missing)"
            )
        if probe is not None and not os.access(probe, os.W_OK | os.X_OK):
            raise ParamsError(
                f"output_root '{self.output_root}': {probe} is not writable by this user. Choose "
                "another output_root (e.g. -p output_root=/tmp/hetfb-outputs)"
            )
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ParamsError(f"run directory {self.run_dir} exists and is a file: remove it or change run_name")

    @property
    def run_dir(self) -> Path:
        """`<output_root>/<run_name>` (a relative output root is under the repository)."""
        root = Path(self.output_root)
        if not root.is_absolute():
            root = REPO_ROOT / root
        return root / self.run_name

    @property
    def cache_path(self) -> Path:
        """The cache shared by runs: `cache_dir`, else `$HETFB_CACHE`, else `~/.cache/hetfb`."""
        p = self.cache_dir or os.environ.get("HETFB_CACHE") or Path.home() / ".cache" / "hetfb"
        return Path(p)

    @property
    def variant_names(self) -> list[str]:
        """Every variant stage 2 builds: `wino` (when asked) and one per strategy and fraction."""
        names = ["wino"] if self.selection.wino_variant else []
        return names + [variant_name(f, s) for s in self.selection.strategies for f in self.selection.fractions]

    @property
    def train_variants(self) -> list[str]:
        """The variants that are trained (`training.variants`, else every variant built)."""
        return self.training.variants or self.variant_names

    @property
    def rl_variants(self) -> list[str]:
        """The trained variants that get an `-R` model (`rl.variants`; none when `rl.algorithm` is `none`)."""
        if self.rl.algorithm == "none":
            return []
        return [v for v in self.train_variants if self.rl.variants is None or v in self.rl.variants]

    def resolved_dump(self) -> dict:
        """The parameters as JSON data with every seed resolved (`data.seed: null` and `data.seed: 42` under
        `seed: 42` are the same draw), plus the pseudo-sections `data_seed`, `training_seed`, `eval_seed` and
        `training_precision` (resolved on this machine)."""
        d = self.model_dump(mode="json")
        d["data"]["seed"], d["training"]["seed"], d["evaluation"]["seed"] = (
            self.data_seed,
            self.training_seed,
            self.eval_seed,
        )
        d.update(data_seed=self.data_seed, training_seed=self.training_seed, eval_seed=self.eval_seed)
        d["training_precision"] = self.training_precision  # resolved: auto is bf16 on one machine, fp32 on another
        d["training"].pop("group_seeds")  # which seeds a group runs: not an input of any stage
        return d

    def digest(self, *sections: str) -> str:
        """Stable hash of the given sections (all when none; seeds resolved): keys caches and manifests."""
        d = self.resolved_dump()
        d = {k: d[k] for k in sections} if sections else d
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


STRATEGY_PREFIX = {"quality_diversity": "hd", "random": "rand", "quality": "q", "diversity": "div"}


def variant_name(fraction: float, strategy: str = "quality_diversity") -> str:
    """`hd-0.2`, `rand-0.2`, `q-0.2`, `div-0.2`; the fraction 1 prints as `1.0`."""
    return f"{STRATEGY_PREFIX[strategy]}-{fraction:g}" if fraction != 1 else f"{STRATEGY_PREFIX[strategy]}-1.0"


def _format_error(source: str, err: ValidationError, raw: dict) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = _model_at(e["loc"][:-1])
            allowed = sorted(parent.model_fields) if parent else []
            msg = f"unknown key. Allowed here: {allowed}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  - {loc or '<top level>'}: {msg}")
    return "\n".join(lines)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Params
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        if inner:  # list[SourceSpec] and similar
            ann = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        model = ann
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def load_params(
    path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None, raw: dict | None = None
) -> Params:
    """Read, merge (`extends`), override and validate a params file. Raises ParamsError."""
    if raw is None:
        if path is None:
            raise ParamsError("give a params file (e.g. params/quickstart.yaml)")
        p = resolve_params_path(path)
        raw, source, base = read_yaml(p), str(p), p.parent
    else:
        source, base = "<dict>", None
    raw = resolve_source_paths(apply_overrides(raw, overrides), base)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(source, e, raw)) from None
