"""The paper's qualitative check: greedy answers to a few single-line prompts (`evaluation.qualitative_prompts`)."""

from __future__ import annotations

from ...common.params import Params
from ...models.scoring import generate_greedy
from ..registry import Benchmark, register


def _score_qualitative(model, tok, prompts: list[str], params: Params) -> dict:
    from ...models.loading import format_prompt

    ev = params.evaluation
    formatted = [format_prompt(tok, q, "[]", params) for q in prompts]
    return {
        "answers": dict(zip(prompts, generate_greedy(model, tok, formatted, ev.max_new_tokens, ev.generate_batch_size)))
    }


register(
    Benchmark(
        "qualitative",
        lambda params: list(params.evaluation.qualitative_prompts),
        _score_qualitative,
        title="qualitative answers",
        order=50,
        fingerprint=lambda prompts: prompts,
        settings=lambda params: params.evaluation.max_new_tokens,  # shared with notebook 04's answers
    )
)
