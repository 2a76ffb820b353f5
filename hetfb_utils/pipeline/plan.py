"""`python -m hetfb_utils plan PARAMS`: what a params file will cost, resolved offline.

The model is built from its config on the meta device (no weights), the LoRA adapters of each
stage are attached to it as PEFT would, and each stage's memory per GPU, tokens and GPU-hours are
estimated for the accelerate config the params name. The estimates are stated formulas, not
measurements:

* memory per GPU = weights (dtype bytes x parameters) + 16 bytes per trainable parameter (fp32
  gradient, Adam's two moments, fp32 master copy) + activations; ZeRO-3 / FSDP full-shard divide
  weights and optimizer state by the number of processes, ZeRO-2 the optimizer state only.
  Activations per sequence of s tokens (Korthikanti et al. 2022, 16-bit): s*h*(34 + 5*a*s/h) bytes
  per layer held in full, s*h*2 per layer with gradient checkpointing (plus one layer in full),
  plus fp32 logits s*V*4;
* FLOPs per token: 2N forward; backward 2N for the activations (LoRA: no full weight gradients)
  plus 2N for the weight gradients of fully trained models; +2N when gradient checkpointing
  recomputes the forward. PPO per episode: decoding the response, scoring query+response with
  policy, reference, reward and value models, then `num_ppo_epochs` of policy (LoRA) and value
  (full) updates. Decoding is memory-bound, so the PPO hours are a lower bound;
* rows: the run's own variant sizes when its selection has run, else the source sizes below.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pandas as pd

from ..common.params import REPO_ROOT, Params

# shapes of well-known models, for planning without network (transformers config fields)
KNOWN_CONFIGS = {
    "meta-llama/Llama-2-7b-hf": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    ),
}
# rows per source when the run has not built its data (Hub sizes; OASST1 train estimated)
SOURCE_ROWS = {
    ("winogrande", "train_xl"): (40398, "WinoGrande XL train (dataset card)"),
    ("winogrande", "train_l"): (10234, "WinoGrande L train"),
    ("winogrande", "train_m"): (2558, "WinoGrande M train"),
    ("winogrande", "train_s"): (640, "WinoGrande S train"),
    ("winogrande", "train_xs"): (160, "WinoGrande XS train"),
    ("winobias", "dev"): (792, "WinoBias dev, types 1+2 (396 pro/anti pairs each)"),
    # the mirror's English validation split gives 424 prompts with >= 2 labelled replies from 2,022
    # messages; the train split has 84,437 messages (all languages, 45.9 % English in validation)
    ("oasst", "train"): (8136, "OASST1 train, estimated: 424 x (84,437 x 0.459) / 2,022"),
    ("oasst", "validation"): (424, "OASST1 validation, English"),
}
GiB = 1024**3


def _online(host: str = "huggingface.co") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def resolve_config(params: Params):
    """(transformers config, where it came from): the model's own config where it can be read
    (embedded, local, or the Hub when reachable), else a built-in shape of a known model."""
    from transformers import AutoConfig, LlamaConfig

    from ..models.loading import EMBEDDED_MODELS, ModelError, base_model_path

    name = params.model.name_or_path
    local = name in EMBEDDED_MODELS or name == "tiny-random" or Path(name).expanduser().exists()
    if local or _online():
        return AutoConfig.from_pretrained(base_model_path(params)), "model config"
    if name in KNOWN_CONFIGS:
        return LlamaConfig(**KNOWN_CONFIGS[name]), "built-in shape (offline)"
    raise ModelError(
        f"plan: the config of '{name}' cannot be read offline and is not a known shape "
        f"({sorted(KNOWN_CONFIGS)}); use a local checkpoint path"
    )


def count_params(config, stage: str, params: Params) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a stage's model, built on the meta device."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from ..common.configs import lora_config

    with torch.device("meta"):
        if stage == "reward":
            config.num_labels = 1
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    task = "SEQ_CLS" if stage == "reward" else "CAUSAL_LM"
    peft_model = get_peft_model(model, lora_config(params, stage, task))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return total, trainable


def launch_setup(params: Params) -> dict:
    """Processes and sharding of the accelerate config the params name (one process in-process)."""
    import yaml

    if params.training.launcher != "accelerate" or not params.training.accelerate_config:
        return {"name": "in-process", "processes": 1, "shard_weights": False, "shard_optim": False}
    path = Path(params.training.accelerate_config)
    cfg = yaml.safe_load((path if path.is_absolute() else REPO_ROOT / path).read_text()) or {}
    kind, n = cfg.get("distributed_type", "NO"), int(cfg.get("num_processes", 1))
    zero = int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0)) if kind == "DEEPSPEED" else 0
    full_shard = kind == "FSDP" and (cfg.get("fsdp_config") or {}).get("fsdp_sharding_strategy") == "FULL_SHARD"
    return {
        "name": f"{path.name} ({kind}, {n} processes" + (f", ZeRO-{zero})" if zero else ")"),
        "processes": n,
        "shard_weights": zero == 3 or full_shard,
        "shard_optim": zero >= 2 or full_shard,
    }


def variant_rows(params: Params) -> tuple[dict, str]:
    """Training rows per variant: the run's own sizes, else the sources' sizes x the fractions."""
    import json

    rep = params.run_dir / "data" / "selection_report.json"
    if rep.is_file():
        sizes = {v: int(r["rows"]) for v, r in json.loads(rep.read_text())["variants"].items() if "rows" in r}
        if sizes:
            return sizes, f"this run's variants ({rep})"
    notes, per_source = [], {}
    for s in params.data.sources:
        n, note = SOURCE_ROWS.get((s.type, s.split), (None, None))
        if n is None:
            from ..common.errors import DataError

            raise DataError(
                f"plan: no size known for source '{s.name}' ({s.type}, split {s.split}); "
                "run stages 1-2 first (`--only data --only selection`)"
            )
        n = min(n, s.max_rows or n)
        per_source[s.name] = round(n * (1 - s.heldout_fraction))
        notes.append(note)
    union = sum(per_source.values())
    sizes = {
        v: round(union * f)
        for v, f in zip(params.variant_names[-len(params.selection.fractions) :], params.selection.fractions)
    }
    if params.selection.wino_variant:
        sizes = {"wino": per_source[params.selection.wino_source], **sizes}
    return sizes, "; ".join(notes)


def _activations(config, seq: int, batch: int, checkpointing: bool) -> float:
    h, a, L, V = config.hidden_size, config.num_attention_heads, config.num_hidden_layers, config.vocab_size
    layer = batch * seq * h * (34 + 5 * a * seq / h)
    held = (L * batch * seq * h * 2 + layer) if checkpointing else L * layer
    return held + batch * seq * V * 4


def plan_table(params: Params, tflops: float = 100.0) -> tuple[pd.DataFrame, dict]:
    """One row per training stage: parameters, memory per GPU, tokens, FLOPs, GPU-hours."""
    import warnings

    with warnings.catch_warnings():  # transformers 5.23 renames `gradient_checkpointing` (paper.yaml
        warnings.simplefilter("ignore", FutureWarning)  # uses the TRL field name): not about the plan
        return _plan_table(params, tflops)


def _checkpointing(args) -> bool:
    """Does the stage recompute activations in the backward pass (transformers 5's name, or the old one)?"""
    return bool(getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", False))


def _work(st: str, args, params: Params, N: int, total: int, trainable: int, P: int, rows_per_variant: dict):
    """(sequence length, weights held, trainable parameters, tokens processed, FLOPs per token) of one stage."""
    ckpt = _checkpointing(args)
    bs, acc = args.per_device_train_batch_size, args.gradient_accumulation_steps
    if st == "ppo":
        seq = params.rl.ppo.max_prompt_length + args.response_length
        # policy + reward + value (+ a reference copy with several processes, see rl.ppo_trainer)
        weights = total * (3 + (P > 1))
        train_params = 2 * trainable  # LoRA policy + LoRA value model (and its score head)
        episodes = [min(args.total_episodes or n, n * args.num_train_epochs) for n in rows_per_variant.values()]
        tokens = sum(episodes) * seq
        per_token = (
            2 * N * args.response_length / seq  # decoding
            + 4 * 2 * N  # policy, ref, reward, value forward
            + args.num_ppo_epochs * (4 * N + 6 * N + (4 * N if ckpt else 0))
        )
    elif st == "rloo":
        seq = params.rl.rloo.max_prompt_length + args.max_completion_length
        weights, train_params = total * 2, trainable  # policy (reference: adapter disabled) + reward model
        steps = args.max_steps if args.max_steps and args.max_steps > 0 else 1
        tokens = steps * args.per_device_train_batch_size * P * len(rows_per_variant) * seq
        per_token = (
            2 * N * args.max_completion_length / seq  # decoding
            + 3 * 2 * N  # policy, reference, reward forward
            + args.num_iterations * (2 * N + 4 * N + (2 * N if ckpt else 0))
        )
    else:
        seq = args.max_length or 512
        pairs = 2 if st in ("reward", "dpo") else 1  # chosen and rejected
        weights, train_params = total, trainable  # DPO: reference = adapter disabled
        global_batch = bs * acc * P
        steps = [
            min(args.max_steps, math.ceil(args.num_train_epochs * n / global_batch))
            if args.max_steps and args.max_steps > 0
            else math.ceil(args.num_train_epochs * n / global_batch)
            for n in rows_per_variant.values()
        ]
        tokens = sum(steps) * global_batch * seq * pairs
        per_token = 2 * N + 2 * N + (2 * N if ckpt else 0) + (2 * N if st == "dpo" else 0)  # DPO: reference pass
    return seq, weights, train_params, tokens, per_token


def _plan_table(params: Params, tflops: float) -> tuple[pd.DataFrame, dict]:
    from ..common.configs import stage_config

    config, source = resolve_config(params)
    setup = launch_setup(params)
    P = setup["processes"]
    rows_per_variant, rows_note = variant_rows(params)
    dtype_bytes = 2 if params.model.dtype in ("bfloat16", "float16") else 4
    rl = {"ppo": ["reward", "ppo"], "rloo": ["reward", "rloo"], "dpo": ["dpo"], "none": []}[params.rl.algorithm]
    stages = ["sft"] + rl
    out = []
    N = None
    for st in stages:
        args = stage_config(params, st, Path("/tmp/hetfb-plan"))
        total, trainable = count_params(config, "reward" if st == "reward" else "sft", params)
        N = N or total
        ckpt = _checkpointing(args)
        bs = args.per_device_train_batch_size
        seq, weights, train_params, tokens, per_token = _work(
            st, args, params, N, total, trainable, P, rows_per_variant
        )
        w = weights * dtype_bytes / (P if setup["shard_weights"] else 1)
        o = train_params * 16 / (P if setup["shard_optim"] else 1)
        act = _activations(config, seq, bs * (2 if st in ("reward", "dpo") else 1), ckpt)
        flops = tokens * per_token
        out.append(
            {
                "stage": st,
                "model params (B)": total / 1e9,
                "trainable (M)": train_params / 1e6,
                "weights/GPU (GiB)": w / GiB,
                "grads+optim/GPU (GiB)": o / GiB,
                "activations/GPU (GiB)": act / GiB,
                "total/GPU (GiB)": (w + o + act) / GiB,
                "tokens (M, all variants)": tokens / 1e6,
                "PFLOP": flops / 1e15,
                "GPU-hours": flops / (tflops * 1e12) / 3600,
            }
        )
    info = {
        "model": params.model.name_or_path,
        "config": source,
        "parameters": N,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "vocab": config.vocab_size,
        "launch": setup["name"],
        "dtype bytes": dtype_bytes,
        "variants": rows_per_variant,
        "rows from": rows_note,
        "throughput": f"{tflops:g} TFLOP/s per GPU (effective, stated)",
    }
    return pd.DataFrame(out), info


def plan_text(params: Params, tflops: float = 100.0) -> str:
    """The plan of a params file as text: the model, the launch, and each stage's memory, tokens and GPU-hours."""
    df, info = plan_table(params, tflops)
    head = "\n".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in info.items())
    hours, P = df["GPU-hours"].sum(), launch_setup(params)["processes"]
    return (
        f"{head}\n\n{df.to_markdown(index=False, floatfmt='.2f')}\n\n"
        f"all stages, all variants: {hours:.1f} GPU-hours at {tflops:g} TFLOP/s per GPU "
        f"= {hours / P:.1f} h on {P} GPU(s) if they scale perfectly"
    )
