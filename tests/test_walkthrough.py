"""The notebooks' worked examples (`hetfb_utils.walkthrough`) on real mirror rows and the tiny model:
each must rebuild what the bulk code computed for the same row or pair."""

from __future__ import annotations

import copy

from hetfb_utils import data
from hetfb_utils.pipeline import walkthrough as W


def test_oasst_example_rebuilds_its_union_row(tiny_built):
    """Raw replies -> label values -> best / worst: the union row's chosen, rejected and quality."""
    p, u, _, _ = tiny_built
    ex = W.example_row(u.union, "oasst")
    assert ex["n_responses"] == u.union.loc[u.union.source == "oasst", "n_responses"].max()
    label, prefer = ex["label"].split(":")
    replies = W.oasst_replies(p, ex).dropna()
    assert len(replies) == ex["n_responses"] >= 2
    chosen, rejected, spread = data.ordinal_to_pair(list(zip(replies["reply"], replies[label])), prefer)
    assert (chosen, rejected) == (ex["chosen"], ex["rejected"])
    assert abs(spread - ex["quality"]) < 1e-12


def test_first_raw_records_convert_like_stage_one(tiny_built):
    p = tiny_built[0]
    raw = W.first_raw(p, "winogrande")
    row = data.parse_winogrande([raw], "winogrande", data.Drops())[0]
    assert row["chosen"] == raw[f"option{raw['answer']}"] and row["prompt"] == raw["sentence"]
    pair = W.first_raw(p, "winobias")
    wb = data.winobias_to_rows([pair], "winobias", data.Drops())[0]
    assert pair["anti"].text.startswith(wb["prompt"]) and pair["pro"].text.startswith(wb["prompt"])
    assert wb["chosen"] in pair["anti"].text and wb["rejected"] in pair["pro"].text and wb["chosen"] != wb["rejected"]


def test_fraction_change_counts_the_kept_rows(tiny_built):
    sel = tiny_built[3]
    df = W.fraction_change(sel.union, "hd-0.5", "hd-1.0")
    assert df[("rows", "hd-1.0")].sum() == len(sel.union)
    assert df[("rows", "hd-0.5")].sum() == sel.union["kept_hd-0.5"].sum()
    assert W.fraction_change(sel.union, "hd-1.0", "hd-1.0").shape[1] == 3  # one variant: one column each


def test_non_default_lists_what_params_set(tiny_built):
    from hetfb_utils.common.configs import lora_config
    from hetfb_utils.training import sft_config

    p = tiny_built[0]
    lora = W.non_default(lora_config(p, "sft", "CAUSAL_LM"))
    assert lora.loc["r", "value"] == 16 and lora.loc["lora_alpha", "value"] == 32
    args = W.non_default(sft_config(p, "/tmp/hetfb-test-unused"))
    assert args.loc["max_steps", "value"] == p.sft.args["max_steps"] and "completion_only_loss" in args.index
    assert "num_train_epochs" not in args.index  # left at TRL's default


def test_mark_loss_tokens_brackets_the_labelled_tokens(tiny_model):
    _, tok = tiny_model
    ids = tok("The answer is Paris", add_special_tokens=False).input_ids
    k = len(tok("The answer is", add_special_tokens=False).input_ids)
    text = W.mark_loss_tokens(tok, ids, [-100] * k + ids[k:])
    assert text.startswith("The answer is⟦") and text.endswith("Paris⟧") and text.count("⟦") == 1


def test_winobias_by_hand_agrees_with_the_batched_scorer(tiny_built, tiny_model):
    """Notebook 05's worked example: the by-hand inputs of one pair give the scorer's per-pair values
    (in float64, where the batch layout no longer matters) to 1e-6, metric by metric."""
    from hetfb_utils.evaluation import eval_data
    from hetfb_utils.evaluation.benchmarks.winobias import eval_winobias

    p = tiny_built[0]
    model, tok = tiny_model
    model64 = copy.deepcopy(model).double()
    pairs = eval_data(p)["winobias"][:3]
    result, _ = eval_winobias(model64, tok, pairs, 8, p)
    for pair in pairs:
        h = W.winobias_by_hand(model64, tok, pair, p)
        scorer = W.scorer_items({"winobias": result}, pair)
        agree = W.agreement(paper_formulas(h), W.module_values(h), scorer)
        assert (agree["module − by hand"] <= 1e-6).all(), agree
        assert (agree["batched − by hand"] <= 1e-6).all(), agree
    assert h["pro"]["prompt"] != h["anti"]["prompt"] and h["pro"]["referent"] == h["anti"]["referent"]


def paper_formulas(h: dict) -> dict:
    """The five Table-1 metrics of one pair written out from the paper's definitions, independently of
    the evaluate module (the same lines notebook 05 shows): the 'by hand' side of the agreement."""
    pro, anti = h["pro"], h["anti"]
    p_anti = anti["next_logprobs"].exp()
    return {
        "Bias": abs(pro["referent_logprob"] - anti["referent_logprob"]),
        "Bias (Entropy)": float((p_anti * (anti["next_logprobs"] - pro["next_logprobs"])).sum()),  # KL(anti || pro)
        "Bias (Cluster)": abs(pro["cluster_logprob"] - anti["cluster_logprob"]),
        "Accuracy": (pro["correct"] + anti["correct"]) / 2,
        "Similarity": float(pro["correct"] == anti["correct"]),
    }
