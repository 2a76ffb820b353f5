"""`model.name_or_path: tiny-random`: a tiny randomly initialised Llama built from a config, with a small byte-level
BPE tokenizer trained on mirror text, in seconds and offline. The tests and `params/tiny.yaml` use it: every stage
runs on it exactly as on a real model, only the numbers mean nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..common.params import Params

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tiny_tokenizer(root: Path | None, vocab_size: int):
    """A byte-level BPE tokenizer trained on real WinoGrande sentences (the mirror's, when there is one) with SmolLM2's
    chat special tokens and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = []
    if root is not None and (root / "winogrande/train_xs.jsonl").is_file():
        corpus = [json.loads(x)["sentence"] for x in (root / "winogrande/train_xs.jsonl").read_text().splitlines()]
    corpus += ["The developer argued with the designer because she did not like the design."] * 4
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_checkpoint(params: Params, cache: Path) -> Path:
    """The tiny model's checkpoint in the cache (built once per config and seed), its path."""
    from ..common.locations import data_dir

    cfg = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "vocab_size": 512,
    }
    cfg.update(params.model.tiny_config)
    key = hashlib.sha1(json.dumps([cfg, params.seed], sort_keys=True).encode()).hexdigest()[:10]
    out = cache / "models" / f"tiny-random-{key}"
    if (out / "hetfb_done.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tiny_tokenizer(data_dir(params), cfg["vocab_size"])
    cfg["vocab_size"] = len(tok)
    torch.manual_seed(params.seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            **cfg,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=True,
        )
    )
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "hetfb_done.json").write_text(json.dumps({"tiny_config": cfg}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
