"""One real example per stage, laid out for the notebooks (seconds each; writes no table or figure).

The bulk work of each stage lives in its own module (`converters`, `selection`, `sft`, `rl`,
`benchmarks.winobias`). These functions take one real row, pair or model of the run and return the
intermediate values the bulk code computes without showing them, so a reader can follow (and check)
each step: the notebooks do the arithmetic in view and call these only to fetch and lay out.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from ..common.params import Params


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
def non_default(cfg) -> pd.DataFrame:
    """The fields of a config dataclass (TRL `SFTConfig`, PEFT `LoraConfig`, ...) that differ from the
    library's default config built on the same device settings: what params (and the kit) set."""
    same = {k: getattr(cfg, k) for k in ("output_dir", "use_cpu", "bf16") if hasattr(cfg, k)}
    with warnings.catch_warnings():  # the library's own defaults may use names it deprecates
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


# --------------------------------------------------------------------------- 04: reward model, PPO
def reward_example(params: Params, variant: str) -> dict:
    """The first held-out pair the variant's reward model is judged on (`training.judged_pairs`: the run's
    held-out pool, else the variant's own held-out slice), formatted as the reward model reads it."""
    from datasets import Dataset

    from ..models.loading import base_model_path, load_tokenizer
    from ..selection import load_variant
    from ..training.reward import judged_pairs, reward_config, reward_split
    from ..training.stages import preference_rows, stage_dir

    pool = judged_pairs(params, reward_split(params, load_variant(params, variant))[1]).head(1)
    tok = load_tokenizer(base_model_path(params))
    max_len = reward_config(params, stage_dir(params, variant, "reward") / "checkpoints").max_length or 512
    row = preference_rows(Dataset.from_pandas(pool, preserve_index=False), tok, params, max_len)[0]
    return {**row, "source": pool.iloc[0]["source"]}


def dpo_margin(params: Params, variant: str, pair: dict) -> dict:
    """DPO's implicit reward of each reply, beta (log pi(y|x) - log pi_ref(y|x)) with pi the DPO policy and
    pi_ref the SFT model, and their margin (chosen - rejected): what DPO's loss pushes up, on one pair."""
    from ..common.configs import stage_config
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer
    from ..models.scoring import score_continuations
    from ..training.stages import stage_dir

    beta = stage_config(params, "dpo", Path(tempfile.gettempdir()) / "hetfb-walkthrough").beta
    tok = load_tokenizer(base_model_path(params))
    sft = stage_dir(params, variant, "sft")
    jobs = [(pair["prompt"], pair["chosen"]), (pair["prompt"], pair["rejected"])]
    policy = score_continuations(load_causal_lm(params, [sft, stage_dir(params, variant, "dpo")]), tok, jobs)
    reference = score_continuations(load_causal_lm(params, [sft]), tok, jobs)
    reward = beta * (policy - reference)
    return {
        "beta": beta,
        "log pi": dict(zip(("chosen", "rejected"), policy)),
        "log pi_ref": dict(zip(("chosen", "rejected"), reference)),
        "implicit reward": dict(zip(("chosen", "rejected"), reward)),
        "margin": float(reward[0] - reward[1]),
    }


def score_pair(reward_model, tok, pair: dict) -> dict:
    """The reward model's scalar for prompt+chosen and prompt+rejected (the pair is right when chosen wins)."""
    from ..training.reward import reward_scores

    c, r = reward_scores(reward_model, tok, [pair["prompt"] + pair["chosen"], pair["prompt"] + pair["rejected"]])
    return {"chosen": float(c), "rejected": float(r), "margin": float(c - r), "right": bool(c > r)}


def ppo_rollout(params: Params, variant: str, prompt: str, seed: int | None = None) -> dict:
    """One PPO rollout as `trl.experimental.ppo.PPOTrainer` computes it, with TRL's own helpers: the
    trained policy samples a response (temperature `args.temperature`), the SFT model (the reference)
    and the policy give each response token's log-prob, the reward model scores the response (cut at
    the stop token). Returns the tensors; the notebook forms the KL penalty and the objective."""
    import torch
    from transformers import GenerationConfig
    from trl.experimental.ppo.ppo_trainer import batch_generation, forward, truncate_response
    from trl.experimental.utils import get_reward
    from trl.trainer.utils import selective_log_softmax

    from ..common.configs import stage_config
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_reward_model, load_tokenizer
    from ..training.stages import stage_dir

    args = stage_config(params, "ppo", Path(tempfile.gettempdir()) / "hetfb-walkthrough")  # read, never written
    tok = load_tokenizer(base_model_path(params))
    sft_dir, rm_dir = stage_dir(params, variant, "sft"), stage_dir(params, variant, "reward")
    policy = load_causal_lm(params, adapters=[sft_dir, stage_dir(params, variant, "ppo")])
    reference = load_causal_lm(params, adapters=[sft_dir])
    reward_model = load_reward_model(params, sft_dir, rm_dir)
    ids = tok(format_prompt(tok, prompt, "[]", params), add_special_tokens=False).input_ids
    query = torch.tensor([ids[-params.rl.ppo.max_prompt_length :]])
    gen = GenerationConfig(
        max_new_tokens=args.response_length, temperature=args.temperature + 1e-7, top_k=0, top_p=1.0, do_sample=True
    )
    torch.manual_seed(params.training_seed if seed is None else seed)
    pad, n = tok.pad_token_id, query.shape[1]
    with torch.no_grad():
        query_response, logits = batch_generation(policy, query, 1, pad, gen)
        response = query_response[:, n:]
        logprob = selective_log_softmax(logits, response)[0]
        ref_logits = forward(reference, query_response, pad).logits[:, n - 1 : -1] / (args.temperature + 1e-7)
        ref_logprob = selective_log_softmax(ref_logits, response)[0]
        stop = tok.eos_token_id
        cut = truncate_response(stop, pad, response) if stop is not None else response
        _, score, _ = get_reward(reward_model, torch.cat((query, cut), 1), pad, n)
    keep = int((cut[0] != pad).sum())  # the tokens TRL counts: up to the first pad token (after the stop token)
    return {
        "prompt": tok.decode(query[0]),
        "response": tok.decode(cut[0, :keep], skip_special_tokens=True),
        "tokens": [tok.decode([t]) for t in response[0, :keep]],
        "logprob": logprob[:keep].double().numpy(),
        "ref_logprob": ref_logprob[:keep].double().numpy(),
        "score": float(score[0]),
        "kl_coef": float(args.kl_coef),
        "kl_estimator": args.kl_estimator,
    }


def rloo_group(params: Params, variant: str, prompt: str, seed: int | None = None) -> pd.DataFrame:
    """One RLOO group as `trl.RLOOTrainer` forms it: k answers sampled from the trained policy for one prompt
    (k = `num_generations`), each scored by the reward model; each answer's baseline is the mean reward of the
    other k - 1, its advantage its reward minus that baseline (what the policy gradient weights it by)."""
    import torch

    from ..common.configs import stage_config
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_reward_model, load_tokenizer
    from ..training.reward import reward_scores
    from ..training.stages import stage_dir

    args = stage_config(params, "rloo", Path(tempfile.gettempdir()) / "hetfb-walkthrough")
    tok = load_tokenizer(base_model_path(params))
    sft = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, [sft, stage_dir(params, variant, "rloo")])
    reward_model = load_reward_model(params, sft, stage_dir(params, variant, "reward"))
    text = format_prompt(tok, prompt, "[]", params)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    torch.manual_seed(params.training_seed if seed is None else seed)
    with torch.no_grad():
        gen = policy.generate(
            ids.repeat(args.num_generations, 1),
            do_sample=True,
            temperature=args.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=args.max_completion_length,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    answers = tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
    r = reward_scores(reward_model, tok, [text + a for a in answers])
    baseline = (r.sum() - r) / (len(r) - 1)
    return pd.DataFrame(
        {"answer": answers, "reward": r, "baseline (others' mean)": baseline, "advantage": r - baseline}
    )


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
