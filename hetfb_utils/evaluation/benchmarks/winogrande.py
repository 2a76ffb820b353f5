"""WinoGrande accuracy on the scoring engine, two ways.

* ``mean_loss`` (the authors' later script, re-implemented; docs/paper.md): fill the blank with each
  option and pick the sentence with the lower mean token loss;
* ``partial`` (lm-evaluation-harness, the number leaderboards quote): the prefix up to the blank with
  each option as the context, the words after the blank as the continuation; pick the option under
  which that continuation is more likely (sum of its token log-probabilities).

Both are always computed; `evaluation.winogrande_method` names the one reported as `accuracy`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...common.params import Params
from ...models.scoring import score_continuations
from ..registry import Benchmark, register
from . import item_ids

METHODS = ("mean_loss", "partial")


def partial_jobs(rows: list[dict]) -> list[tuple[str, str]]:
    """lm-eval's `winogrande` task: contexts `sentence[:blank] + option`, target the rest of the
    sentence after the blank (stripped), joined by one space."""
    jobs = []
    for r in rows:
        s = r["prompt"]
        i = s.index("_")
        jobs += [(s[:i] + o, " " + s[i + 1 :].strip()) for o in (r["option1"], r["option2"])]
    return jobs


def eval_winogrande(
    model, tok, rows: list[dict], batch_size: int, method: str = "mean_loss"
) -> tuple[dict, pd.DataFrame]:
    """WinoGrande accuracy by the authors' mean-loss scoring and by lm-eval's partial scoring, with per-item values."""
    start = tok.bos_token or tok.eos_token or ""
    filled = [(start, r["prompt"].replace("_", o, 1)) for r in rows for o in (r["option1"], r["option2"])]
    s, n = score_continuations(model, tok, filled + partial_jobs(rows), batch_size, return_counts=True)
    k = len(filled)
    mean = s[:k] / np.maximum(n[:k], 1)
    part = s[k:]
    preds = {"mean_loss": np.where(mean[0::2] >= mean[1::2], 1, 2), "partial": np.where(part[0::2] >= part[1::2], 1, 2)}
    gold = np.array([int(r["answer"]) for r in rows])
    acc = {m: float(np.mean(p == gold)) if len(gold) else float("nan") for m, p in preds.items()}
    df = pd.DataFrame(
        {
            "sentence": [r["prompt"] for r in rows],
            "pred": preds[method],
            "answer": gold,
            "pred_mean_loss": preds["mean_loss"],
            "pred_partial": preds["partial"],
        }
    )
    return {
        "accuracy": acc[method],
        "method": method,
        "accuracy_mean_loss": acc["mean_loss"],
        "accuracy_partial": acc["partial"],
        "rows": len(rows),
        "items": {
            "id": item_ids(r["prompt"] for r in rows),
            "accuracy": (preds[method] == gold).astype(float).tolist(),
            **{f"accuracy_{m}": (p == gold).astype(float).tolist() for m, p in preds.items()},
        },
    }, df


def load_winogrande_eval(params: Params) -> list[dict]:
    """`evaluation.winogrande_split` as (prompt, chosen, rejected) rows, at most `winogrande_max` drawn with
    `evaluation.seed`."""
    from ... import data as D

    ev = params.evaluation
    rows = D.parse_winogrande(D.load_winogrande_rows(ev.winogrande_split, D.data_dir(params)), "wg_eval", D.Drops())
    if ev.winogrande_max and len(rows) > ev.winogrande_max:
        rows = pd.DataFrame(rows).sample(n=ev.winogrande_max, random_state=params.eval_seed).to_dict("records")
    return rows


register(
    Benchmark(
        "winogrande",
        load_winogrande_eval,
        lambda model, tok, rows, params: eval_winogrande(
            model, tok, rows, params.evaluation.batch_size, params.evaluation.winogrande_method
        )[0],
        title="WinoGrande accuracy",
        table="winogrande",
        files=lambda params: [f"winogrande/{params.evaluation.winogrande_split}.jsonl"],
        size="winogrande_max",
        order=20,
        columns=(
            ("accuracy", "accuracy", None),
            ("accuracy_mean_loss", "accuracy_mean_loss", None),
            ("accuracy_partial", "accuracy_partial", None),
        ),
        row=lambda r: {k: r.get(k) for k in ("accuracy", "method", "accuracy_mean_loss", "accuracy_partial", "rows")},
    )
)
