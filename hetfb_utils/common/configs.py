"""The TRL / PEFT config dataclasses the training sections map onto.

A training section's `args` go to the TRL config of its stage (`SFTConfig`, `RewardConfig`,
`PPOConfig`, `DPOConfig`) and its `lora` to PEFT's `LoraConfig`: the params keys *are* those
dataclasses' fields. `check_fields` refuses an unknown field (naming the allowed ones) and a value
of the wrong type for its field (checked against the dataclass's own type hints with pydantic), so a
typo or `learning_rate: fast` is an error at `validate`, not a crash inside training.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path
from typing import Any

STAGE_SECTIONS = {
    "sft": ("sft",),
    "reward": ("reward",),
    "ppo": ("rl", "ppo"),
    "rloo": ("rl", "rloo"),
    "dpo": ("rl", "dpo"),
}
LORA_DEFAULTS = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "v_proj"],
    "bias": "none",
}


@functools.cache
def config_class(kind: str):
    """The TRL / PEFT config dataclass of a stage (`sft`, `reward`, `ppo`, `rloo`, `dpo`) or of `lora`."""
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
    if kind == "rloo":
        from trl import RLOOConfig

        return RLOOConfig
    raise KeyError(kind)


def config_fields(kind: str) -> set[str]:
    """The field names of `config_class(kind)`."""
    return set(config_class(kind).__dataclass_fields__)


@functools.cache
def _field_validators(kind: str) -> dict:
    """field name -> pydantic TypeAdapter of its type hint (fields whose hint pydantic cannot check
    are left out: they are passed through as given)."""
    from pydantic import TypeAdapter

    cls = config_class(kind)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a hint that does not resolve: check the names only
        return {}
    out = {}
    for name in cls.__dataclass_fields__:
        if name not in hints:
            continue
        try:
            out[name] = TypeAdapter(hints[name])
        except Exception:  # noqa: BLE001 - a type pydantic has no schema for (torch.dtype, ...)
            continue
    return out


def check_fields(kind: str, given: dict[str, Any], section: str) -> dict[str, Any]:
    """The fields of `given` checked against the dataclass of `kind`: unknown names and values of the
    wrong type raise ValueError (naming the field, the value and the type it needs). A number written
    as text (`2e-3`, which YAML 1.1 reads as a string) comes back as the number."""
    cls = config_class(kind)
    allowed = config_fields(kind)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) in `{section}`: {unknown}. "
            f"Allowed: the fields of {cls.__name__} (e.g. {sorted(allowed)[:12]} ...)"
        )
    from pydantic import ValidationError

    out, bad = dict(given), []
    for name, value in given.items():
        adapter = _field_validators(kind).get(name)
        if adapter is None:
            continue
        try:
            checked = adapter.validate_python(value)
        except ValidationError as e:
            hint = typing.get_type_hints(cls)[name]
            need = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            bad.append(f"{name}={value!r} ({e.errors()[0]['msg']}; {cls.__name__}.{name} takes {need})")
            continue
        if isinstance(value, str) and isinstance(checked, (int, float)) and not isinstance(checked, bool):
            out[name] = checked
    if bad:
        raise ValueError(f"wrong type for {cls.__name__} field(s) in `{section}`: " + "; ".join(bad))
    return out


def _section(params, stage: str):
    node = params
    for part in STAGE_SECTIONS[stage]:
        node = getattr(node, part)
    return node


def stage_config(params, stage: str, output_dir: Path, **extra):
    """The TRL config of a stage from its `args`, over the run's defaults (training seed, precision, no
    reporting, CPU/GPU settings, checkpoints) and the stage's own `extra` defaults."""
    import torch

    section = _section(params, stage)
    cls = config_class(stage)
    # use_cpu without CUDA: under `accelerate launch` the processes then join over gloo (the
    # Trainer would otherwise treat each of them as a lone process writing the same files)
    kwargs = {
        "output_dir": str(output_dir),
        "seed": params.training_seed,
        "report_to": "none",
        "bf16": params.training_precision == "bf16",  # mixed precision (`common.precision`)
        "use_cpu": not torch.cuda.is_available(),
        "save_strategy": "steps",
        "save_total_limit": 1,
        "logging_steps": 1,
        "disable_tqdm": False,
    }
    kwargs.update(extra)
    kwargs.update(section.args)
    names = {f.name for f in dataclasses.fields(cls)}
    # pinned memory only helps copies to a GPU (torch warns when it is asked for without one)
    kwargs.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    if "activation_checkpointing" in names:
        # transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing` (and warns at every
        # config whose old field is set, as TRL's default True is); pass the value under its new name. TRL turns it
        # on by default to save GPU memory; on a CPU memory is ample and recomputing every layer's forward in the
        # backward pass costs time (`make bench` measures it), so there it is off unless the params ask for it.
        default = {f.name: f.default for f in dataclasses.fields(cls)}.get("gradient_checkpointing")
        default = default if torch.cuda.is_available() else False
        kwargs.setdefault("activation_checkpointing", kwargs.pop("gradient_checkpointing", default))
        kwargs.pop("gradient_checkpointing", None)
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def lora_config(params, stage: str, task_type: str):
    """PEFT's `LoraConfig` of a stage: the kit's defaults (StackLLaMA: q_proj, v_proj) under its `lora`."""
    from peft import LoraConfig

    kw = {**LORA_DEFAULTS, **_section(params, stage).lora, "task_type": task_type}
    return LoraConfig(**kw)
