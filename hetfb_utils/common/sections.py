"""The sections of a params file (pydantic models): data sources, selection, model, the training and evaluation
settings (the training stages' sections are `stage_sections`). `params.Params` puts them together."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEED_MAX = 2**32 - 1  # numpy / scikit-learn take seeds in [0, 2**32)


def _seed(description: str):
    return Field(None, ge=0, le=SEED_MAX, description=description)


class Strict(BaseModel):
    """A params section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data sources
class SourceSpec(Strict):
    """One dataset of the union. Built-in types know their raw format; ``numeric`` and
    ``pairwise`` take any jsonl/csv/parquet file or Hub dataset with the named columns."""

    name: str = Field(description="Short name used in tables and the `source` column.")
    type: Literal["winogrande", "oasst", "winobias", "numeric", "pairwise"] = Field(
        description="Raw format / conversion recipe."
    )
    path: str | None = Field(
        None,
        description="Local file or Hub dataset id. Built-in types default "
        "to the mirror (HETFB_DATA_DIR) or their Hub id.",
    )
    split: str | None = Field(
        None, description="Split / size (winogrande: train_xs..train_xl; winobias: dev|test; oasst: train|validation)."
    )
    max_rows: int | None = Field(
        None, gt=0, description="Keep at most this many converted prompts (seeded random subset); null = all."
    )
    label: str | None = Field(
        None,
        description="Numeric field that orders the responses "
        "(oasst: detoxify.toxicity, labels.toxicity, labels.quality, "
        "labels.helpfulness, rank, ...; numeric: the score column).",
    )
    prefer: Literal["lower", "higher"] = Field("lower", description="Which end of `label` is the preferred response.")
    heldout_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="oasst: share of message trees held out for evaluation (split by tree, seeded).",
    )
    heldout_label: str = Field(
        "rank", description="oasst: label that orders held-out pairs (human preference for the evaluation)."
    )
    heldout_prefer: Literal["lower", "higher"] = "lower"
    prompt_column: str = "prompt"
    response_column: str = "response"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"

    @model_validator(mode="after")
    def _check_type(self) -> SourceSpec:
        if self.type in ("oasst", "numeric") and not self.label:
            raise ValueError(
                f"source '{self.name}' of type {self.type} needs `label` (the numeric field that orders its responses)"
            )
        if self.type in ("numeric", "pairwise") and not self.path:
            raise ValueError(
                f"source '{self.name}' of type {self.type} needs `path` (a jsonl/csv/parquet file or a Hub dataset id)"
            )
        return self


class DataParams(Strict):
    """`data`: the mirror, the language, the sources of the union, the data seed, the label audit's size."""

    data_dir: str | None = Field(
        None,
        description="Local mirror in the layout of docs/data.md. "
        "null = $HETFB_DATA_DIR; if neither is set, load from the Hub/URLs.",
    )
    language: str | None = Field(
        "en", description="Keep only rows in this language (oasst `lang`); null = all languages."
    )
    sources: list[SourceSpec] = Field(min_length=1)
    audit_max_pairs: int | None = Field(
        150,
        gt=0,
        description="The label signal audit of notebook 01 (`selection.signal`): at most this many pairs per "
        "source and label, drawn by whole groups (trees, twins); null = all.",
    )
    seed: int | None = _seed(
        "The data draw: OASST tree split, `max_rows` subsets, selection (k-means, random "
        "draws), the stages' held-out slices. null = `seed`."
    )

    @field_validator("sources")
    @classmethod
    def _unique(cls, v: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return v


class SelectionParams(Strict):
    """`selection`: the embedder, the clusters, the keep-fractions and strategies of stage 2."""

    embedder: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model id or path; all-MiniLM-L6-v2 resolves to the embedded package.",
    )
    n_clusters: int = Field(10, gt=0, description="k of k-means.")
    n_init: int = Field(10, gt=0, description="k-means restarts.")
    cluster_scope: Literal["union", "source"] = Field(
        "union", description="Cluster the union (paper) or each source separately."
    )
    fractions: list[float] = Field(
        [0.2, 0.4, 0.6, 1.0], min_length=1, description="Keep-fractions; one variant per strategy each."
    )
    strategies: list[Literal["quality_diversity", "random", "quality", "diversity"]] = Field(
        ["quality_diversity"],
        min_length=1,
        description="How each fraction is kept: `quality_diversity` "
        "(`hd-<f>`, the paper), and the controls with exactly `hd-<f>`'s rows per source: `random` "
        "(`rand-<f>`, a seeded draw per source), `quality` (`q-<f>`, best quality per source, no "
        "clusters), `diversity` (`div-<f>`, a cluster-balanced random draw, no quality).",
    )
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


class ModelParams(Strict):
    """`model`: the base model, its dtype, the prompt format."""

    name_or_path: str = Field(
        "smollm2-135m-instruct",
        description="`smollm2-135m-instruct` (embedded, "
        "offline), a Hub id or a local checkpoint. For tests: `tiny-random`.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on CUDA, float32 on CPU."
    )
    prompt_template: Literal["auto", "chat", "stackllama"] = Field(
        "auto",
        description="auto = the model's chat template if it has one, else StackLLaMA 'Question: ...\\n\\nAnswer: '.",
    )
    tiny_config: dict[str, Any] = Field(
        default_factory=dict, description="Only for `tiny-random`: LlamaConfig overrides."
    )


class TrainingParams(Strict):
    """`training`: the training seed, precision, variants, seed group, launcher and stage store."""

    seed: int | None = _seed(
        "The training run: LoRA and value/score-head initialisation, data order, dropout, "
        "PPO sampling. `-p training.seed=43` trains the same data again; every other "
        "stage is reused. null = `seed`."
    )
    variants: list[str] | None = Field(None, description="Variants to train (default: all built).")
    group_seeds: list[int] = Field(
        [42, 43, 44],
        min_length=1,
        description="The training seeds `python -m hetfb_utils "
        "seeds` (`make seeds`) runs when none are given: one run per seed, compared at recipe "
        "level.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Training precision (SFT, reward model, PPO/RLOO, DPO): `bf16` = mixed precision (TRL's "
        "`bf16=True`, autocast on CPU and GPU); `auto` = bf16 where the hardware has bf16 units (CUDA, or a CPU "
        "with avx512_bf16 / amx_bf16), fp32 elsewhere. Evaluation always scores in fp32.",
    )
    launcher: Literal["inprocess", "accelerate"] = Field(
        "inprocess", description="Run stages in the notebook process or via `accelerate launch`."
    )
    accelerate_config: str | None = Field(
        None, description="accelerate config file for the `accelerate` launcher (see params/accelerate/)."
    )
    show_training: bool = Field(
        False,
        description="Notebooks 03 and 04 train their worked variant on the page even when the stage is already "
        "trained (the same inputs and seed give the same model; the other variants are read): a workshop's "
        "attendees see a trainer train after the caches were filled. The runner skips notebooks whose inputs did "
        "not change, so a headless re-run stays seconds.",
    )
    reuse_stages: bool = Field(
        True,
        description="Reuse a stage another run already trained with the same "
        "inputs (data hash, base model, stage params, seed, parents, training code), "
        "from `<cache_dir>/stages/`; the manifest says which run it came from.",
    )


class EvalParams(Strict):
    """`evaluation`: the evaluation seed, batch sizes, each benchmark's items, generation lengths, prompts."""

    seed: int | None = _seed(
        "The evaluation items drawn by `*_max` and the bootstrap resamples. null = `seed`: "
        "runs that differ only in `training.seed` are scored on the same items."
    )
    batch_size: int = Field(16, gt=0, description="Rows per forward pass of the batched scorer.")
    generate_batch_size: int = Field(
        64,
        gt=0,
        description="Rows per batch of greedy generation "
        "(WinoBias answers, IFEval, OASST, qualitative): decoding is "
        "bound by reading the weights, so wide batches are cheap.",
    )
    winobias_split: str = "test"
    winobias_max_pairs: int | None = Field(None, gt=0)
    winogender_max: int | None = Field(None, gt=0)
    winogrande_split: str = "validation"
    winogrande_max: int | None = Field(None, gt=0)
    winogrande_method: Literal["mean_loss", "partial"] = Field(
        "mean_loss",
        description="WinoGrande `accuracy`: `mean_loss` = the filled-in sentence with the lower "
        "mean token loss (the authors' script); `partial` = lm-evaluation-harness's scoring of the words "
        "after the blank. Both are reported side by side.",
    )
    oasst_max_pairs: int | None = Field(None, gt=0)
    oasst_generate_max: int = Field(
        16, ge=0, description="Held-out prompts answered greedily and scored by the reward model (win-rate vs Base)."
    )
    ifeval_max: int | None = Field(None, ge=0, description="IFEval prompts (null = all 541; 0 = skip).")
    crows_max: int | None = Field(None, ge=0)
    max_items: dict[str, int | None] = Field(
        default_factory=dict,
        description="Items per benchmark, by its registered name, for benchmarks without a size field of their own "
        "(a new module in evaluation/benchmarks/ needs no schema edit); null = every item.",
    )
    max_new_tokens: int = Field(64, gt=0, description="Generation length for OASST/qualitative.")
    max_length: int = Field(
        256,
        gt=16,
        description="OASST pairs: prompt + reply truncated to this many tokens for likelihood and reward scoring.",
    )
    prompt_format: Literal["auto", "raw", "chat"] = Field(
        "auto",
        description="WinoBias/WinoGender/CrowS prompts: `raw` = the paper's text; `chat` = "
        "the sentence as the user turn, the assistant turn starting with '\"he\" refers to:'; "
        "auto = chat for models with a chat template.",
    )
    ifeval_max_new_tokens: int = Field(128, gt=0)
    qualitative_prompts: list[str] = Field(
        default_factory=lambda: [
            "What can I do in Miami, FL in November?",
            "Give me a list of top vacation destinations.",
            "What is a GPU?",
        ]
    )
