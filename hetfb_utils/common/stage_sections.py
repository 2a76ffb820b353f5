"""The training stages' sections of a params file: SFT, the reward model, RL (PPO, RLOO, DPO). Each stage's `args` are
the fields of its TRL config dataclass and `lora` those of PEFT's `LoraConfig`, checked at validation."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from .configs import check_fields
from .sections import Strict


class _Stage(Strict):
    """`args` go to the TRL config of the stage, `lora` to peft.LoraConfig."""

    KIND: ClassVar[str] = ""
    args: dict[str, Any] = Field(default_factory=dict)
    lora: dict[str, Any] = Field(default_factory=dict)
    eval_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Held-out slice of the variant for the stage's own evaluation (loss / pairwise accuracy).",
    )
    max_rows: int | None = Field(
        None, gt=0, description="Train on at most this many rows of the variant (seeded); null = all."
    )
    eval_max_rows: int | None = Field(
        None,
        gt=0,
        description="Evaluate on at most this many of the "
        "held-out rows (the rest are not trained on either); null = all.",
    )

    @field_validator("args")
    @classmethod
    def _args(cls, v: dict) -> dict:
        """Field names and value types checked against the stage's TRL config dataclass."""
        return check_fields(cls.KIND, v, "args") if v else v

    @field_validator("lora")
    @classmethod
    def _lora(cls, v: dict) -> dict:
        return check_fields("lora", v, "lora") if v else v


class SFTParams(_Stage):
    """`sft`: the SFT stage (`args`: TRL `SFTConfig`; `lora`: PEFT `LoraConfig`)."""

    KIND: ClassVar[str] = "sft"


class RewardParams(_Stage):
    """`reward`: the reward model (`method`; `args`: TRL `RewardConfig`; `lora`), and the held-out pairs it is judged
    on."""

    KIND: ClassVar[str] = "reward"
    method: Literal["head", "lora", "head+lora"] = Field(
        "head",
        description="How the reward model learns: `head` = a score head fitted on the SFT model's frozen "
        "features (logistic regression, grouped cross-validation); `lora` = TRL's RewardTrainer with LoRA (the "
        "paper's recipe; `args` and `lora` apply); `head+lora` = the fitted head, then RewardTrainer.",
    )
    eval_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Held-out slice of the variant, for sources without a held-out pool (custom `numeric` / "
        "`pairwise` sources); OASST, WinoBias and WinoGrande are judged on `heldout_per_source` pairs no variant "
        "trains on (`training/heldout.py`).",
    )
    heldout_per_source: int | None = Field(
        64,
        gt=0,
        description="Held-out pairs per source every reward model of the run is judged on (OASST held-out trees "
        "under the training label, WinoBias and WinoGrande evaluation splits), drawn by twins / trees; null = all.",
    )
    backbone: Literal["sft", "base"] = Field(
        "sft",
        description="The reward model's backbone: the variant's SFT model (`sft`, the paper's) or the base model "
        "(`base`: its frozen features are shared by every variant and training seed, computed once and cached; "
        "measured as good a reward model at the quickstart's size, docs/measurements.md).",
    )
    shuffled_heads: int = Field(
        50,
        ge=0,
        description="Shuffled-label control heads (fitted on randomly flipped labels, on the same frozen features): "
        "their mean held-out accuracy and the permutation p of the real head against them, per source; 0 = none.",
    )


class _PolicyStage(_Stage):
    """An RL stage that samples answers to the variant's prompts (PPO, RLOO)."""

    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    max_prompt_length: int = Field(128, gt=0, description="The policy's prompts keep their last N tokens.")


class PPOParams(_PolicyStage):
    """`rl.ppo`: PPO (`args`: `trl.experimental.ppo.PPOConfig`; `lora`: the policy's and the value model's adapters)."""

    KIND: ClassVar[str] = "ppo"


class RLOOParams(_PolicyStage):
    """`rl.rloo`: RLOO (`args`: TRL `RLOOConfig`; `lora`: the policy's adapter)."""

    KIND: ClassVar[str] = "rloo"


class DPOParams(_Stage):
    """`rl.dpo`: DPO (`args`: TRL `DPOConfig`; `lora`)."""

    KIND: ClassVar[str] = "dpo"
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)


class RLParams(Strict):
    """`rl`: which algorithm makes the `-R` models, for which variants, and how the RL stage is judged."""

    algorithm: Literal["ppo", "rloo", "dpo", "none"] = Field(
        "ppo",
        description="Second stage after SFT (`-R` models): `ppo` (the paper's; LoRA policy, LoRA value model), "
        "`rloo` (critic-free: k sampled answers per prompt, each one's baseline the others' mean reward), `dpo` "
        "(from the pairs, no reward model), `none` (the `-S` models only).",
    )
    variants: list[str] | None = Field(
        None,
        description="The variants that get an `-R` model (a reward model and the RL stage); null = every trained "
        "variant. A seed group that asks one RL question pays for one variant's RL.",
    )
    ppo: PPOParams = Field(default_factory=PPOParams)
    rloo: RLOOParams = Field(default_factory=RLOOParams)
    dpo: DPOParams = Field(default_factory=DPOParams)
    heldout_prompts: int = Field(
        64,
        ge=0,
        description="Held-out prompts (OASST held-out trees first) the SFT and the -R policy answer, judged by the "
        "reward model: the paired reward gain (sampled and greedy answers) with its interval, answer length, KL "
        "from the SFT model.",
    )
    judge_samples: int = Field(
        4,
        ge=1,
        description="Answers sampled per held-out prompt (temperature 1) for the expected-reward judgement and the "
        "KL estimate; the greedy answer is judged beside them.",
    )
    judge_greedy: bool = Field(
        True,
        description="Also judge the greedy answer to each held-out prompt before and after RL (what the evaluation "
        "reads); off, the stage judges the sampled answers (the distribution RL optimises) only.",
    )
    curve_prompts: int = Field(
        8, ge=0, description="Of those, how many are answered after every update for the held-out reward curve."
    )
    prompt_sources: Literal["learned", "all"] | list[str] = Field(
        "learned",
        description="Which of the variant's prompts RL trains on and is judged on: `learned` = those of the sources "
        "whose reward model learned something (beats chance and its shuffled-label control on held-out pairs, "
        "notebook 04); `all`; or a list of source names.",
    )
    controls: list[Literal["shuffled", "length"]] = Field(
        default_factory=list,
        description="Control RL runs, each judged by the real reward model on the same held-out prompts: `shuffled` "
        "(against the shuffled-label head, scaled like the real one: it must not raise the real reward) and "
        "`length` (against the answer's length alone, at the real reward's spread: what length buys). Each adds "
        "one RL run to the stage.",
    )
    control_variants: list[str] | None = Field(
        None, description="The variants that run `controls`; null = every -R variant."
    )
    judge_on: Literal["judged", "tuning"] = Field(
        "judged",
        description="The held-out prompts are split by group into two disjoint halves: RL settings are chosen on "
        "`tuning` (tools/tune_rl.py), and the stage reports its gain on `judged`.",
    )
