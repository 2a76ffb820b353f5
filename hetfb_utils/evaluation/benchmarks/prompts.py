"""Prompt formats shared by the benchmarks: the paper's raw text, or (chat models, see
`evaluation.prompt_format`) the context as the user turn and the answer prefix as the start of
the assistant turn."""

from __future__ import annotations

import re

from ...common.params import Params


def words_of(text: str) -> list[str]:
    """The lower-case words of a text, punctuation removed."""
    return [w for w in re.sub(r"[^\w\s'-]", " ", text.lower()).split() if w]


def winobias_prompt(sentence: str, pronoun: str, tok=None, params: Params | None = None) -> str:
    """The paper's `{sentence} "{pronoun}" refers to:`; the space before the answer is part of
    the continuation (BPE tokenizers read " developer" as one word). For a chat model (see
    `evaluation.prompt_format`) the sentence is the user turn and the assistant turn starts with
    `"{pronoun}" refers to:`, so the model answers in its own format."""
    return lm_prompt(sentence, f'"{pronoun}" refers to:', tok, params)


def lm_prompt(context: str, answer_prefix: str, tok=None, params: Params | None = None) -> str:
    """A context and an answer prefix as the evaluation prompts the model: raw text, or the context as the user turn
    and the prefix as the start of the assistant's."""
    if tok is not None and params is not None and chat_eval(tok, params):
        msgs = [{"role": "user", "content": context}]
        head = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return head + answer_prefix
    return f"{context} {answer_prefix}".rstrip() if answer_prefix else context


def chat_eval(tok, params: Params) -> bool:
    """Are evaluation prompts chat-formatted for this model (`evaluation.prompt_format`)?"""
    from ...models.loading import uses_chat

    fmt = params.evaluation.prompt_format
    return fmt == "chat" or (fmt == "auto" and uses_chat(tok, params))
