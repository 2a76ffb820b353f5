"""Parameter files: one validated schema (pydantic) for every stage.

A params file is YAML. It may ``extends: other.yaml`` (resolved relative to the file), so a new
mix is a short diff; ``-p key.sub=value`` overrides a single key from the command line. The
training sections pass their ``args`` straight to the TRL config dataclass of that stage
(``SFTConfig``, ``RewardConfig``, ``PPOConfig``, ``DPOConfig``) and their ``lora`` to PEFT's
``LoraConfig``; their keys are checked against those dataclasses, so a typo is an error that
names the key, not a silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .params_files import (PARAMS_DIR, REPO_ROOT, ParamsError, _read_yaml, apply_overrides,  # noqa: F401
                           parse_override, resolve_params_path)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data sources
class SourceSpec(_Strict):
    """One dataset of the union. Built-in types know their raw format; ``numeric`` and
    ``pairwise`` take any jsonl/csv/parquet file or Hub dataset with the named columns."""

    name: str = Field(description="Short name used in tables and the `source` column.")
    type: Literal["winogrande", "oasst", "winobias", "numeric", "pairwise"] = Field(
        description="Raw format / conversion recipe.")
    path: str | None = Field(None, description="Local file or Hub dataset id. Built-in types default "
                             "to the mirror (HETFB_DATA_DIR) or their Hub id.")
    split: str | None = Field(None, description="Split / size (winogrande: train_xs..train_xl; "
                              "winobias: dev|test; oasst: train|validation).")
    max_rows: int | None = Field(None, gt=0, description="Keep at most this many converted prompts "
                                 "(seeded random subset); null = all.")
    label: str | None = Field(None, description="Numeric field that orders the responses "
                              "(oasst: detoxify.toxicity, labels.toxicity, labels.quality, "
                              "labels.helpfulness, rank, ...; numeric: the score column).")
    prefer: Literal["lower", "higher"] = Field(
        "lower", description="Which end of `label` is the preferred response.")
    heldout_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="oasst: share of message "
                                    "trees held out for evaluation (split by tree, seeded).")
    heldout_label: str = Field("rank", description="oasst: label that orders held-out pairs "
                               "(human preference for the evaluation).")
    heldout_prefer: Literal["lower", "higher"] = "lower"
    prompt_column: str = "prompt"
    response_column: str = "response"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"

    @model_validator(mode="after")
    def _check_type(self) -> "SourceSpec":
        if self.type in ("oasst", "numeric") and not self.label:
            raise ValueError(f"source '{self.name}' of type {self.type} needs `label` "
                             "(the numeric field that orders its responses)")
        if self.type in ("numeric", "pairwise") and not self.path:
            raise ValueError(f"source '{self.name}' of type {self.type} needs `path` "
                             "(a jsonl/csv/parquet file or a Hub dataset id)")
        return self


class DataParams(_Strict):
    data_dir: str | None = Field(None, description="Local mirror in the layout of shared/data. "
                                 "null = $HETFB_DATA_DIR; if neither is set, load from the Hub/URLs.")
    language: str | None = Field("en", description="Keep only rows in this language (oasst `lang`); "
                                 "null = all languages.")
    sources: list[SourceSpec] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _unique(cls, v: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return v


class SelectionParams(_Strict):
    embedder: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model id or path; "
                          "all-MiniLM-L6-v2 resolves to the embedded package.")
    n_clusters: int = Field(10, gt=0, description="k of k-means.")
    n_init: int = Field(10, gt=0, description="k-means restarts.")
    cluster_scope: Literal["union", "source"] = Field("union", description="Cluster the union "
                                                      "(paper) or each source separately.")
    fractions: list[float] = Field([0.2, 0.4, 0.6, 1.0], min_length=1,
                                   description="Keep-fractions; one variant per strategy each.")
    strategies: list[Literal["quality_diversity", "random", "quality", "diversity"]] = Field(
        ["quality_diversity"], min_length=1, description="How each fraction is kept: `quality_diversity` "
        "(`hd-<f>`, the paper), and the controls with exactly `hd-<f>`'s rows per source: `random` "
        "(`rand-<f>`, a seeded draw per source), `quality` (`q-<f>`, best quality per source, no "
        "clusters), `diversity` (`div-<f>`, a cluster-balanced random draw, no quality).")
    wino_variant: bool = Field(True, description="Also build `wino` (WinoGrande only, unfiltered).")
    wino_source: str = Field("winogrande", description="Source name used by the `wino` variant.")
    embed_batch_size: int = Field(64, gt=0)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not (0.0 < f <= 1.0)]
        if bad:
            raise ValueError(f"every fraction must be in (0, 1], got {bad}")
        return sorted(set(v))

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class ModelParams(_Strict):
    name_or_path: str = Field("smollm2-135m-instruct", description="`smollm2-135m-instruct` (embedded, "
                              "offline), a Hub id or a local checkpoint. For tests: `tiny-random`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on CUDA, float32 on CPU.")
    prompt_template: Literal["auto", "chat", "stackllama"] = Field(
        "auto", description="auto = the model's chat template if it has one, else StackLLaMA "
        "'Question: ...\\n\\nAnswer: '.")
    tiny_config: dict[str, Any] = Field(default_factory=dict, description="Only for `tiny-random`: "
                                        "LlamaConfig overrides.")


def _config_fields(kind: str) -> set[str]:
    return set(_config_class(kind).__dataclass_fields__)


@functools.lru_cache(maxsize=None)
def _config_class(kind: str):
    if kind == "lora":
        from peft import LoraConfig
        return LoraConfig
    if kind == "sft":
        from trl import SFTConfig
        return SFTConfig
    if kind == "reward":
        from trl import RewardConfig
        return RewardConfig
    if kind == "dpo":
        from trl import DPOConfig
        return DPOConfig
    if kind == "ppo":
        from trl.experimental.ppo import PPOConfig
        return PPOConfig
    raise KeyError(kind)


class _Stage(_Strict):
    """`args` go to the TRL config of the stage, `lora` to peft.LoraConfig."""

    KIND: ClassVar[str] = ""
    args: dict[str, Any] = Field(default_factory=dict)
    lora: dict[str, Any] = Field(default_factory=dict)
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Held-out slice of the variant "
                                 "for the stage's own evaluation (loss / pairwise accuracy).")
    max_rows: int | None = Field(None, gt=0, description="Train on at most this many rows of the "
                                 "variant (seeded); null = all.")
    eval_max_rows: int | None = Field(None, gt=0, description="Evaluate on at most this many of the "
                                      "held-out rows (the rest are not trained on either); null = all.")

    @model_validator(mode="after")
    def _known_keys(self) -> "_Stage":
        for section, kind in (("args", self.KIND), ("lora", "lora")):
            given = getattr(self, section)
            if not given:
                continue
            allowed = _config_fields(kind)
            unknown = sorted(set(given) - allowed)
            if unknown:
                cls = _config_class(kind).__name__
                raise ValueError(f"unknown {cls} field(s) in `{section}`: {unknown}. "
                                 f"Allowed: the fields of {cls} (e.g. {sorted(allowed)[:12]} ...)")
        return self


class SFTParams(_Stage):
    KIND: ClassVar[str] = "sft"


class RewardParams(_Stage):
    KIND: ClassVar[str] = "reward"


class PPOParams(_Stage):
    KIND: ClassVar[str] = "ppo"
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    max_prompt_length: int = Field(128, gt=0, description="PPO prompts keep their last N tokens.")
    probe_prompts: int = Field(16, ge=0, description="Training prompts answered greedily before and "
                               "after PPO and scored by the reward model (did the reward rise?); 0 = off.")


class DPOParams(_Stage):
    KIND: ClassVar[str] = "dpo"
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)


class RLParams(_Strict):
    algorithm: Literal["ppo", "dpo"] = Field("ppo", description="Second stage after SFT (`-R` models).")
    ppo: PPOParams = Field(default_factory=PPOParams)
    dpo: DPOParams = Field(default_factory=DPOParams)


class TrainingParams(_Strict):
    variants: list[str] | None = Field(None, description="Variants to train (default: all built).")
    launcher: Literal["inprocess", "accelerate"] = Field(
        "inprocess", description="Run stages in the notebook process or via `accelerate launch`.")
    accelerate_config: str | None = Field(None, description="accelerate config file for the "
                                          "`accelerate` launcher (see params/accelerate/).")
    reuse_stages: bool = Field(True, description="Reuse a stage another run already trained with the same "
                               "inputs (data hash, base model, stage params, seed, parents, training code), "
                               "from `<cache_dir>/stages/`; the manifest says which run it came from.")


class EvalParams(_Strict):
    batch_size: int = Field(16, gt=0, description="Rows per forward pass of the batched scorer.")
    generate_batch_size: int = Field(64, gt=0, description="Rows per batch of greedy generation "
                                     "(WinoBias answers, IFEval, OASST, qualitative): decoding is "
                                     "bound by reading the weights, so wide batches are cheap.")
    winobias_split: str = "test"
    winobias_max_pairs: int | None = Field(None, gt=0)
    winogender_max: int | None = Field(None, gt=0)
    winogrande_split: str = "validation"
    winogrande_max: int | None = Field(None, gt=0)
    winogrande_method: Literal["mean_loss", "partial"] = Field(
        "mean_loss", description="WinoGrande `accuracy`: `mean_loss` = the filled-in sentence with the lower "
        "mean token loss (the authors' script); `partial` = lm-evaluation-harness's scoring of the words "
        "after the blank. Both are reported side by side.")
    oasst_max_pairs: int | None = Field(None, gt=0)
    oasst_generate_max: int = Field(16, ge=0, description="Held-out prompts answered greedily and "
                                    "scored by the reward model (win-rate vs Base).")
    ifeval_max: int | None = Field(None, ge=0, description="IFEval prompts (null = all 541; 0 = skip).")
    crows_max: int | None = Field(None, ge=0)
    max_new_tokens: int = Field(64, gt=0, description="Generation length for OASST/qualitative.")
    max_length: int = Field(256, gt=16, description="OASST pairs: prompt + reply truncated to this "
                            "many tokens for likelihood and reward scoring.")
    prompt_format: Literal["auto", "raw", "chat"] = Field(
        "auto", description="WinoBias/WinoGender/CrowS prompts: `raw` = the paper's text; `chat` = "
        "the sentence as the user turn, the assistant turn starting with '\"he\" refers to:'; "
        "auto = chat for models with a chat template.")
    ifeval_max_new_tokens: int = Field(128, gt=0)
    qualitative_prompts: list[str] = Field(default_factory=lambda: [
        "What can I do in Miami, FL in November?",
        "Give me a list of top vacation destinations.",
        "What is a GPU?",
    ])


class Params(_Strict):
    run_name: str = Field(description="Outputs go to "
                          "<output_root>/<run_name>/: a plain name (letters, digits, '.', '_', '-'), no path.")
    seed: int = 42
    output_root: str = Field("outputs", description="Relative paths are relative to the repository.")
    cache_dir: str | None = Field(None, description="Cache for converted data, embeddings, the "
                                  "materialised base model. null = $HETFB_CACHE or ~/.cache/hetfb.")
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
            raise ValueError(f"run_name must be a plain name (letters, digits, '.', '_', '-'; no '/' or "
                             f"'..'), got {v!r}: the run writes to <output_root>/<run_name>/. Use "
                             "output_root to choose the directory")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        names = [s.name for s in self.data.sources]
        if self.selection.wino_variant and self.selection.wino_source not in names:
            raise ValueError(f"selection.wino_source '{self.selection.wino_source}' is not a source "
                             f"name {names}; set it, or selection.wino_variant: false")
        if self.training.variants:
            unknown = sorted(set(self.training.variants) - set(self.variant_names))
            if unknown:
                raise ValueError(f"training.variants {unknown} are not built; built variants: "
                                 f"{self.variant_names}")
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        root = Path(self.output_root)
        if not root.is_absolute():
            root = REPO_ROOT / root
        return root / self.run_name

    @property
    def cache_path(self) -> Path:
        p = self.cache_dir or os.environ.get("HETFB_CACHE") or Path.home() / ".cache" / "hetfb"
        return Path(p)

    @property
    def variant_names(self) -> list[str]:
        names = ["wino"] if self.selection.wino_variant else []
        return names + [variant_name(f, s) for s in self.selection.strategies for f in self.selection.fractions]

    @property
    def train_variants(self) -> list[str]:
        return self.training.variants or self.variant_names

    def digest(self, *sections: str) -> str:
        """Stable hash of the given sections (all when none): keys caches and manifests."""
        d = self.model_dump(mode="json")
        if sections:
            d = {k: d[k] for k in sections}
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


def load_params(path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None,
                raw: dict | None = None) -> Params:
    """Read, merge (`extends`), override and validate a params file. Raises ParamsError."""
    if raw is None:
        if path is None:
            raise ParamsError("give a params file (e.g. params/quickstart.yaml)")
        p = resolve_params_path(path)
        raw, source = _read_yaml(p), str(p)
    else:
        source = "<dict>"
    raw = apply_overrides(raw, overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(source, e, raw)) from None


def stage_config(params: Params, stage: str, output_dir: Path, **extra):
    """Build the TRL config of a stage from its `args` (+ our run-level defaults)."""
    section = {"sft": params.sft, "reward": params.reward, "ppo": params.rl.ppo,
               "dpo": params.rl.dpo}[stage]
    cls = _config_class(stage)
    import torch
    on_gpu = torch.cuda.is_available() and params.model.dtype in ("auto", "bfloat16")
    # use_cpu without CUDA: under `accelerate launch` the processes then join over gloo (the
    # Trainer would otherwise treat each of them as a lone process writing the same files)
    kwargs = {"output_dir": str(output_dir), "seed": params.seed, "report_to": "none", "bf16": on_gpu,
              "use_cpu": not torch.cuda.is_available(),
              "save_strategy": "steps", "save_total_limit": 1, "logging_steps": 1,
              "disable_tqdm": False}
    kwargs.update(extra)
    kwargs.update(section.args)
    names = {f.name for f in dataclasses.fields(cls)}
    # pinned memory only helps copies to a GPU (torch warns when it is asked for without one)
    kwargs.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    if "activation_checkpointing" in names:
        # transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing` (and warns at every
        # config whose old field is set, as TRL's default True is); pass the value under its new name
        old_default = {f.name: f.default for f in dataclasses.fields(cls)}.get("gradient_checkpointing")
        kwargs.setdefault("activation_checkpointing", kwargs.pop("gradient_checkpointing", old_default))
        kwargs.pop("gradient_checkpointing", None)
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def lora_config(params: Params, stage: str, task_type: str):
    from peft import LoraConfig
    section = {"sft": params.sft, "reward": params.reward, "ppo": params.rl.ppo,
               "dpo": params.rl.dpo}[stage]
    kw = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
          "bias": "none"}
    kw.update(section.lora)
    kw["task_type"] = task_type
    return LoraConfig(**kw)
