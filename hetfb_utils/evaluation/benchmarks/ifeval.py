"""IFEval: greedy answers checked by Google's verifiable-instruction checkers (lm-eval's copy)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...common.params import Params
from ...data.eval_sets import IFEVAL_FILE
from ...models.scoring import generate_greedy
from ..registry import Benchmark, register

IFEVAL_NEEDS_PUNKT = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}


def ifeval_checker():
    """The official verifiable-instruction checkers (google-research, as packaged in lm-eval)."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from lm_eval.tasks.ifeval import utils as ifeval_utils  # tries nltk.download at import
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(
            f"IFEval needs lm-eval's ifeval task (pip install lm-eval langdetect "
            f"immutabledict nltk): {type(e).__name__}: {e}"
        ) from None
    return ifeval_utils


def punkt_available() -> bool:
    """Is NLTK's `punkt_tab` sentence splitter installed (the two sentence-counting checkers need it)?"""
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab")
        return True
    except (ImportError, LookupError):
        return False


def ifeval_usable(rows: list[dict]) -> tuple[list[dict], int]:
    """Rows the checkers can score here: without NLTK's punkt_tab data (offline), the two
    instruction types that split sentences cannot be checked; their prompts are skipped, counted."""
    if punkt_available():
        return rows, 0
    keep = [r for r in rows if not IFEVAL_NEEDS_PUNKT & set(r["instruction_id_list"])]
    return keep, len(rows) - len(keep)


def eval_ifeval(model, tok, rows: list[dict], params: Params, batch_size: int) -> tuple[dict, pd.DataFrame]:
    """Greedy answers to IFEval prompts checked by Google's checkers: prompt- and instruction-level accuracy, strict
    and loose, with per-prompt values."""
    from ...models.loading import format_prompt

    utils = ifeval_checker()
    prompts = [format_prompt(tok, r["prompt"], "[]", params) for r in rows]
    answers = generate_greedy(model, tok, prompts, params.evaluation.ifeval_max_new_tokens, batch_size)
    res = [utils.process_results(r, [a]) for r, a in zip(rows, answers)]
    out = {
        "prompt_level_strict": float(np.mean([x["prompt_level_strict_acc"] for x in res])),
        "inst_level_strict": float(np.mean([v for x in res for v in x["inst_level_strict_acc"]])),
        "prompt_level_loose": float(np.mean([x["prompt_level_loose_acc"] for x in res])),
        "inst_level_loose": float(np.mean([v for x in res for v in x["inst_level_loose_acc"]])),
        "prompts": len(rows),
        "items": {
            "id": [str(r["key"]) for r in rows],
            "prompt_level_strict": [float(x["prompt_level_strict_acc"]) for x in res],
            "prompt_level_loose": [float(x["prompt_level_loose_acc"]) for x in res],
            "inst_strict_followed": [float(sum(x["inst_level_strict_acc"])) for x in res],
            "inst_loose_followed": [float(sum(x["inst_level_loose_acc"])) for x in res],
            "instructions": [float(len(x["inst_level_strict_acc"])) for x in res],
        },
    }
    return out, pd.DataFrame({"key": [r["key"] for r in rows], "answer": answers})


def load_ifeval_eval(params: Params) -> dict:
    """The IFEval prompts the checkers can score here (at most `evaluation.ifeval_max`), and how many were
    skipped for want of NLTK's sentence splitter."""
    from ... import data as D

    rows, skipped = ifeval_usable(D.load_ifeval(params))
    if params.evaluation.ifeval_max:
        rows = rows[: params.evaluation.ifeval_max]
    return {"rows": rows, "skipped_needs_punkt": skipped}


def _score_ifeval(model, tok, data: dict, params: Params) -> dict:
    val, _ = eval_ifeval(model, tok, data["rows"], params, params.evaluation.generate_batch_size)
    val["skipped_needs_punkt"] = data["skipped_needs_punkt"]
    return val


register(
    Benchmark(
        "ifeval",
        load_ifeval_eval,
        _score_ifeval,
        title="IFEval (Google's checkers)",
        table="ifeval",
        files=lambda params: [IFEVAL_FILE],
        size="ifeval_max",
        order=60,
        columns=(
            ("prompt_level_strict", "prompt_level_strict", None),
            ("prompt_level_loose", "prompt_level_loose", None),
            ("inst_level_strict", "inst_strict_followed", "instructions"),
            ("inst_level_loose", "inst_loose_followed", "instructions"),
        ),
        enabled=lambda params: params.evaluation.ifeval_max != 0,
        fingerprint=lambda data: len(data["rows"]),
    )
)
