"""Training precision: `training.precision: auto | fp32 | bf16`.

`bf16` trains in mixed precision (weights and optimizer in fp32, matrix products in bfloat16 under autocast:
`bf16=True` of the TRL / Transformers configs, on CPU and GPU). `auto` picks bf16 where the hardware computes in
it natively: a CUDA device that supports bf16, or a CPU with bf16 matrix units (`avx512_bf16` or `amx_bf16` in
/proc/cpuinfo); elsewhere fp32, where bf16 would be emulated and slower. Evaluation scoring always runs in fp32
(its fidelity check holds at 1e-5 in log-probability; bf16 logits move by ~0.04). The resolved precision and the
reason are recorded in every stage's manifest and key: an fp32 and a bf16 model are different models.
"""

from __future__ import annotations

import functools
from pathlib import Path

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The bf16 matrix-unit flags this CPU advertises (empty where it has none, or cpuinfo is unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


@functools.cache
def resolve(setting: str = "auto") -> tuple[str, str]:
    """(`fp32` or `bf16`, why) for a `training.precision` setting on this machine."""
    if setting not in ("auto", "fp32", "bf16"):
        raise ValueError(f"training.precision must be auto, fp32 or bf16, got {setting!r}")
    import torch

    if torch.cuda.is_available():
        ok = torch.cuda.is_bf16_supported()
        where = f"CUDA device {torch.cuda.get_device_name(0)} {'supports' if ok else 'does not support'} bf16"
    else:
        flags = cpu_bf16_flags()
        ok = bool(flags)
        where = f"this CPU has {', '.join(flags)}" if ok else "this CPU has no bf16 matrix units (no avx512_bf16 or "
        where += "" if ok else "amx_bf16 in /proc/cpuinfo): bf16 would be emulated, slower than fp32"
    if setting != "auto":
        return setting, f"asked for ({where})"
    return ("bf16" if ok else "fp32"), f"auto: {where}"
