"""One real example per stage, laid out for the notebooks (seconds each; writes no table or figure).

The bulk work of each stage lives in its own module (`converters`, `selection`, `sft`, `rl`,
`benchmarks.winobias`). These functions take one real row, pair or model of the run and return the
intermediate values the bulk code computes without showing them, so a reader can follow (and check)
each step: the notebooks do the arithmetic in view and call these only to fetch and lay out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import pandas as pd

from ..common.params import Params
from .walkthrough_rl import dpo_margin, ppo_rollout, reward_example, rloo_group, score_pair  # noqa: F401 - notebook 04's


def short(text: str, n: int = 90) -> str:
    """A text on one line, cut to `n` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- 01-02: data
def example_row(union: pd.DataFrame, source: str) -> pd.Series:
    """A deterministic example of `source`: the prompt with the most replies (ties: lowest prompt_id)."""
    rows = union[union["source"] == source]
    if rows.empty:
        raise ValueError(f"the union has no rows of source '{source}' (sources: {sorted(union['source'].unique())})")
    return rows.sort_values(["n_responses", "prompt_id"], ascending=[False, True]).iloc[0]


def oasst_replies(params: Params, row: pd.Series) -> pd.DataFrame:
    """The assistant replies to the prompter message of an OASST union row, read from the raw file,
    with the value of the label the row was built from (`data.sources[].label`)."""
    from ..data import data_dir, get_label, load_oasst_rows

    spec = next(s for s in params.data.sources if s.name == row["source"])
    label = str(row["label"]).split(":")[0]  # "detoxify.toxicity:lower"
    replies = [
        m
        for m in load_oasst_rows(spec.split or "validation", data_dir(params))
        if m.get("parent_id") == row["message_id"] and m.get("role") == "assistant" and not m.get("deleted")
    ]
    return pd.DataFrame({"reply": [m["text"].strip() for m in replies], label: [get_label(m, label) for m in replies]})


def numeric_replies(params: Params, row: pd.Series) -> pd.DataFrame:
    """The responses of a `numeric` source's prompt, read from its file, with their score."""
    from ..data import read_table

    spec = next(s for s in params.data.sources if s.name == row["source"])
    rows = [r for r in read_table(spec.path, spec.split) if str(r.get(spec.prompt_column, "")).strip() == row["prompt"]]
    return pd.DataFrame(
        {
            "reply": [str(r[spec.response_column]).strip() for r in rows],
            spec.label: pd.to_numeric([r.get(spec.label) for r in rows], errors="coerce"),
        }
    )


SKIPPED_SCORED = (
    "This mix has no scored source (`oasst` or `numeric`), so there is no numerical -> ordinal -> "
    "binary conversion to show: skipped."
)


def scored_example(params: Params, union: pd.DataFrame) -> dict | None:
    """The mix's example of numerical -> ordinal -> binary: the OASST prompt with the most replies when the mix
    has an OASST source, else the `numeric` source's prompt with the most scored replies; None when it has
    neither. {row, replies (reply, label value), label, prefer}."""
    spec = next(
        (
            s
            for t in ("oasst", "numeric")
            for s in params.data.sources
            if s.type == t and (union["source"] == s.name).any()
        ),
        None,
    )
    if spec is None:
        return None
    row = example_row(union, spec.name)
    label, prefer = str(row["label"]).split(":")
    replies = oasst_replies(params, row) if spec.type == "oasst" else numeric_replies(params, row)
    return {"row": row, "replies": replies.dropna().reset_index(drop=True), "label": label, "prefer": prefer}


def first_raw(params: Params, source_type: str):
    """The first raw record of the run's source of this type: a WinoGrande row (dict), a WinoBias pair
    ({"pro", "anti", "type"}) or a `pairwise` file's row, before any conversion; None when the mix has none."""
    from ..data import Drops, data_dir, load_winobias_pairs, load_winogrande_rows, read_table, winobias_hf_pairs

    spec = next((s for s in params.data.sources if s.type == source_type), None)
    if spec is None:
        return None
    root = data_dir(params)
    if source_type == "winogrande":
        return load_winogrande_rows(spec.split or "train_xs", root)[0]
    if source_type == "pairwise":
        return read_table(spec.path, spec.split)[0]
    split = spec.split or "dev"
    pairs = (
        load_winobias_pairs(split, root, spec.name, Drops())
        if root is not None
        else winobias_hf_pairs(split, spec.name, Drops())
    )
    return pairs[0]


def binary_examples(params: Params) -> tuple[pd.DataFrame, list[str]]:
    """The first raw record of each binary / pairwise source type of the mix (WinoGrande, WinoBias, `pairwise`)
    through its stage-1 converter: (the converted rows with the raw record beside them, what was skipped)."""
    from ..data import Drops, parse_pairwise, parse_winogrande, winobias_to_rows

    rows, skipped = [], []
    for kind in ("winogrande", "winobias", "pairwise"):
        raw = first_raw(params, kind)
        if raw is None:
            skipped.append(kind)
            continue
        spec = next(s for s in params.data.sources if s.type == kind)
        if kind == "winogrande":
            out, text = parse_winogrande([raw], spec.name, Drops()), str(raw)
        elif kind == "winobias":
            out, text = (
                winobias_to_rows([raw], spec.name, Drops()),
                f"pro: {raw['pro'].text} | anti: {raw['anti'].text}",
            )
        else:
            out, text = parse_pairwise([raw], spec, Drops()), str(raw)
        if out:
            rows.append(
                {
                    "raw record": short(text, 160),
                    **{k: out[0][k] for k in ("source", "supervision", "prompt", "chosen", "rejected")},
                }
            )
    return pd.DataFrame(rows), skipped


def fraction_change(sel_union: pd.DataFrame, small: str, large: str) -> pd.DataFrame:
    """Per source, what two variants keep: rows, mean quality of the kept rows, clusters covered."""
    rows = []
    for src, g in sel_union.groupby("source", sort=False):
        for name in dict.fromkeys((small, large)):  # one column when they are the same variant
            kept = g[g[f"kept_{name}"]]
            rows.append(
                {
                    "source": src,
                    "variant": name,
                    "rows": len(kept),
                    "mean_quality": kept["quality"].mean() if kept["quality"].notna().any() else None,
                    "clusters_covered": kept["cluster"].nunique(),
                }
            )
    return pd.DataFrame(rows).pivot(index="source", columns="variant")


# --------------------------------------------------------------------------- 03: SFT
@contextlib.contextmanager
def _accelerate_state_kept():
    """Building a `TrainingArguments` resets accelerate's shared state, which a trainer built before it still
    reads when it trains: keep the state as it was."""
    from accelerate.state import AcceleratorState, PartialState

    kept = {cls: dict(cls._shared_state) for cls in (PartialState, AcceleratorState)}
    try:
        yield
    finally:
        for cls, state in kept.items():
            if state:
                cls._shared_state.clear()
                cls._shared_state.update(state)


def non_default(cfg) -> pd.DataFrame:
    """The fields of a config dataclass (TRL `SFTConfig`, PEFT `LoraConfig`, ...) that differ from the
    library's default config built on the same device settings: what params (and the kit) set."""
    same = {k: getattr(cfg, k) for k in ("output_dir", "use_cpu", "bf16") if hasattr(cfg, k)}
    with warnings.catch_warnings(), _accelerate_state_kept():  # defaults may use names the library deprecates
        warnings.simplefilter("ignore", FutureWarning)
        default = type(cfg)(**same)
    rows = [
        {"field": f.name, "value": getattr(cfg, f.name), "default": getattr(default, f.name)}
        for f in dataclasses.fields(cfg)
        if f.name not in ("logging_dir", *same) and repr(getattr(cfg, f.name)) != repr(getattr(default, f.name))
    ]
    return pd.DataFrame(rows, columns=["field", "value", "default"], dtype=object).set_index("field")


def mark_loss_tokens(tok, input_ids: list[int], labels: list[int], open_: str = "⟦", close: str = "⟧") -> str:
    """The tokenized example as text, the tokens that carry the loss (label != -100) between ⟦ ⟧."""
    out, inside = [], False
    for t, lab in zip(input_ids, labels):
        on = lab != -100
        if on != inside:
            out.append(open_ if on else close)
            inside = on
        out.append(tok.decode([t]))
    return "".join(out) + (close if inside else "")


def answers(params: Params, prompt: str, models: dict[str, list], max_new_tokens: int | None = None) -> pd.DataFrame:
    """Greedy answers of several models (name -> adapter dirs; [] = the base model) to one prompt,
    formatted as the run formats prompts."""
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_tokenizer
    from ..models.scoring import generate_greedy

    tok = load_tokenizer(base_model_path(params))
    text = format_prompt(tok, prompt, "[]", params)
    n = max_new_tokens or params.evaluation.max_new_tokens
    return pd.DataFrame(
        [
            {
                "model": name,
                "prompt": prompt,
                "answer": generate_greedy(load_causal_lm(params, adapters=a), tok, [text], n)[0],
            }
            for name, a in models.items()
        ]
    ).set_index("model")


# --------------------------------------------------------------------------- 05: WinoBias by hand
def winobias_by_hand(model, tok, pair: dict, params: Params) -> dict:
    """The inputs of the five Table-1 metrics for one WinoBias pair, computed the plain way: one
    forward pass per continuation token (no batching, no prefix cache), the next-token distribution
    after each prompt, the greedy answer (<= 10 tokens, cut at punctuation)."""
    from ..evaluation.benchmarks.prompts import winobias_prompt
    from ..evaluation.benchmarks.winobias import ARTICLES, PUNCT_STOP, cluster_hit
    from ..models.scoring import generate_greedy, next_token_logprobs, reference_logprob

    out = {}
    for side in ("pro", "anti"):
        s = pair[side]
        prompt = winobias_prompt(s.text, s.pronoun, tok, params)
        answer = generate_greedy(model, tok, [prompt], 10, 1, stop_at=PUNCT_STOP)[0]
        out[side] = {
            "sentence": s.text,
            "prompt": prompt,
            "referent": s.referent,
            "cluster_words": list(s.cluster_words),
            "referent_logprob": reference_logprob(model, tok, prompt, " " + s.referent),
            "cluster_logprob": sum(reference_logprob(model, tok, prompt, " " + w) for w in s.cluster_words),
            "next_logprobs": next_token_logprobs(model, tok, [prompt], 1)[0].double(),
            "answer": answer,
            "correct": cluster_hit(answer, [w for w in s.referent_words if w.lower() not in ARTICLES]),
        }
    return out


def scorer_items(result: dict, pair: dict) -> dict:
    """The batched scorer's per-pair values of the five metrics for this pair (from a model's result)."""
    from ..evaluation.benchmarks import item_ids

    items = result["winobias"]["items"]
    k = items["id"].index(item_ids([pair["pro"].text])[0])
    return {m: items[m][k] for m in items if m != "id"}


def module_values(by_hand: dict) -> dict:
    """The kit's `winobias` evaluate module on the by-hand inputs of one pair."""
    from ..evaluation.benchmarks.winobias import winobias_metrics

    pro, anti = by_hand["pro"], by_hand["anti"]
    m = winobias_metrics(
        [pro["referent_logprob"]],
        [anti["referent_logprob"]],
        [pro["cluster_logprob"]],
        [anti["cluster_logprob"]],
        pro["next_logprobs"][None].float(),
        anti["next_logprobs"][None].float(),
        [pro["correct"]],
        [anti["correct"]],
    )
    return {k: m[k] for k in ("Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity")}


def agreement(by_hand: dict, module: dict, batched: dict) -> pd.DataFrame:
    """By-hand values beside the evaluate module's on the same inputs and the batched run's value for
    the pair, with the absolute differences."""
    df = pd.DataFrame(
        {
            "by hand": pd.Series(by_hand, dtype=float),
            "evaluate module": pd.Series(module, dtype=float),
            "batched run": pd.Series(batched, dtype=float),
        }
    )
    df["module − by hand"] = (df["evaluate module"] - df["by hand"]).abs()
    df["batched − by hand"] = (df["batched run"] - df["by hand"]).abs()
    return df.loc[list(by_hand)]
