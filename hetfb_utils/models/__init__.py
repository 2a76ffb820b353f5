"""The models every stage shares: base models and adapters, prompt formats, and the scoring engine.

| module | what |
|---|---|
| `loading` | the embedded SmolLM2 (de-quantised once), any Hub id or checkpoint; the pad token; adapters merged in order; the reward model; chat template or StackLLaMA prompts |
| `tiny` | `tiny-random`: a tiny random Llama and tokenizer built in seconds (the tests' model) |
| `speed` | the base model's forward FLOP rate on this machine (recorded with every run's timings) |
| `scoring` | batched log-likelihoods on shared prefix caches, next-token distributions, greedy generation |
"""

from .loading import (
    ModelError,
    base_model_path,
    device_and_dtype,
    format_prompt,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    merge_adapters,
    uses_chat,
)
from .scoring import generate_greedy, next_token_logprobs, reference_logprob, score_continuations

__all__ = [
    "ModelError",
    "base_model_path",
    "device_and_dtype",
    "format_prompt",
    "generate_greedy",
    "load_causal_lm",
    "load_reward_model",
    "load_tokenizer",
    "merge_adapters",
    "next_token_logprobs",
    "reference_logprob",
    "score_continuations",
    "uses_chat",
]
