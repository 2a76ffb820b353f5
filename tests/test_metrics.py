"""The batched scorer against a naive loop, and each metric on inputs with known answers."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from hetfb_utils import data as D
from hetfb_utils.evaluation import tables as T
from hetfb_utils.evaluation.benchmarks import crows as CR
from hetfb_utils.evaluation.benchmarks import ifeval as IF
from hetfb_utils.evaluation.benchmarks import prompts as P
from hetfb_utils.evaluation.benchmarks import winobias as WB
from hetfb_utils.evaluation.benchmarks import winogrande as WGR
from hetfb_utils.models import scoring as S

WORDS = "the developer argued with designer because she he did not like it a an of".split()  # noqa: SIM905


def test_scorer_equals_naive_loop(tiny_model):
    model, tok = tiny_model
    rng = random.Random(0)
    words = WORDS
    pairs = [
        (" ".join(rng.choices(words, k=rng.randint(1, 12))), " ".join(rng.choices(words, k=rng.randint(1, 6))))
        for _ in range(25)
    ]
    fast = S.score_continuations(model, tok, pairs, batch_size=7)
    slow = [S.reference_logprob(model, tok, p, c) for p, c in pairs]
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    one = S.score_continuations(model, tok, pairs, batch_size=1)
    np.testing.assert_allclose(fast, one, atol=1e-4)  # padding does not change a row
    same = [("the developer", c) for _, c in pairs[:11]]  # one prompt, continuations in 4 batches
    np.testing.assert_allclose(
        S.score_continuations(model, tok, same, batch_size=3),
        [S.reference_logprob(model, tok, p, c) for p, c in same],
        atol=1e-4,
    )


def test_scorer_is_pinned_on_a_model_where_positions_matter(tiny_model):
    """The tiny random model barely reads positions (an off-by-one in position ids moved a score by 4e-4 in -68.7), so
    it cannot catch one: here its queries and keys are scaled up so attention is sharp and rotary positions decide
    it. An off-by-one gap in the positions moves log-probabilities by more than 0.02 (20x the tolerance below); the
    batched scorer, with its shared prefix caches and left-padded rows, still equals the one-row reference."""
    import copy

    model, tok = tiny_model
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        for layer in sharp.model.layers:
            layer.self_attn.q_proj.weight.mul_(10.0)
            layer.self_attn.k_proj.weight.mul_(10.0)
    rng = random.Random(3)
    head = "system: you are a helpful assistant . user : "
    pairs = [
        (head + " ".join(rng.choices(WORDS, k=rng.randint(2, 9))), " ".join(rng.choices(WORDS, k=rng.randint(1, 4))))
        for _ in range(16)
    ]
    ids = tok(pairs[0][0] + pairs[0][1], return_tensors="pt").input_ids
    gap = torch.arange(ids.shape[1])[None]
    gap[:, ids.shape[1] // 2 :] += 1  # an off-by-one in the second half (rotary positions are relative: a gap shows)
    with torch.no_grad():
        right = sharp(input_ids=ids).logits.log_softmax(-1)
        shifted = sharp(input_ids=ids, position_ids=gap).logits.log_softmax(-1)
    assert (right - shifted).abs().max() > 0.02  # positions matter: 20x the tolerance the scorer is held to below
    fast = S.score_continuations(sharp, tok, pairs, batch_size=5)
    np.testing.assert_allclose(fast, [S.reference_logprob(sharp, tok, p, c) for p, c in pairs], atol=1e-3)


def test_scorer_shares_a_long_prefix_exactly(tiny_model):
    """Prompts that share a chat-style head: the head runs once, every row still scores as alone."""
    model, tok = tiny_model
    rng = random.Random(1)
    head = "system: you are a helpful assistant of the developer and the designer . user : "
    words = WORDS
    pairs = [
        (head + " ".join(rng.choices(words, k=rng.randint(1, 9))), " ".join(rng.choices(words, k=rng.randint(1, 4))))
        for _ in range(20)
    ]
    assert S.shared_prefix([tok(p).input_ids for p, _ in pairs]) >= 10
    fast, nxt = S.score_continuations(model, tok, pairs, batch_size=6, next_for=[p for p, _ in pairs[:5]])
    slow = [S.reference_logprob(model, tok, p, c) for p, c in pairs]
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    torch.testing.assert_close(nxt, S.next_token_logprobs(model, tok, [p for p, _ in pairs[:5]], 1), atol=1e-4, rtol=0)


def test_scorer_answers_equal_generate_greedy(tiny_model):
    """Answers generated on the scorer's own prompt cache are the ones `generate_greedy` gives."""
    model, tok = tiny_model
    head = "system: you are a helpful assistant . user : "
    prompts = [
        head + p for p in ["the developer argued", "a", "she did not like the design because it was", "he refers to"]
    ]
    pairs = [(p, " the developer") for p in prompts[:3]]
    for stop in (None, {"e"}):
        _, _, answers = S.score_continuations(model, tok, pairs, 3, next_for=prompts, answer=(8, stop))
        assert answers == S.generate_greedy(model, tok, prompts, 8, 2, stop_at=stop)


def test_scorer_shares_family_prefixes_exactly(tiny_model):
    """Pro/anti-like prompts (same sentence, one word swapped) share their prefix as a family; mixed
    with prompts of other lengths and one that is a prefix of another, all still score as alone."""
    model, tok = tiny_model
    head = "system: you are a helpful assistant . user : "
    stems = [
        "the developer argued with the designer because",
        "she did not like the design because it was",
        "a developer of the design",
    ]
    prompts = [head + s + w for s in stems for w in (" he did", " she did", " it")] + [head + "a", head + "a developer"]
    pairs = [(p, c) for p in prompts for c in (" the developer", " it")]
    ids = {p: tok(p).input_ids for p in prompts}
    fams = S.prompt_families(ids, S.shared_prefix(list(ids.values())))
    assert sorted(m for _, ms in fams for m in ms) == sorted(prompts)
    assert max(len(ms) for _, ms in fams) >= 2
    for L, ms in fams:
        assert all(len(ids[m]) > L and ids[m][:L] == ids[ms[0]][:L] for m in ms)
    fast, nxt, ans = S.score_continuations(model, tok, pairs, batch_size=4, next_for=prompts, answer=(6, None))
    np.testing.assert_allclose(fast, [S.reference_logprob(model, tok, p, c) for p, c in pairs], atol=1e-4)
    torch.testing.assert_close(nxt, S.next_token_logprobs(model, tok, prompts, 1), atol=1e-4, rtol=0)
    assert ans == S.generate_greedy(model, tok, prompts, 6, 3)


def test_shared_prefix_leaves_each_row_a_token():
    assert S.shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert S.shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert S.shared_prefix([[7], [7, 8]]) == 0
    assert S.shared_prefix([[1, 2]]) == 1
    assert S.shared_prefix([]) == 0


def test_no_bos_inside_continuation(tiny_model):
    model, tok = tiny_model
    _, counts = S.score_continuations(model, tok, [("a", "developer")], return_counts=True)
    assert counts[0] == len(tok("developer", add_special_tokens=False).input_ids)
    assert tok.bos_token_id not in tok("developer", add_special_tokens=False).input_ids


def test_next_token_logprobs_batched(tiny_model):
    model, tok = tiny_model
    prompts = ["the developer", "she did not like the design because", "a"]
    batched = S.next_token_logprobs(model, tok, prompts, batch_size=3)
    single = torch.cat([S.next_token_logprobs(model, tok, [p], 1) for p in prompts])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)
    assert torch.allclose(batched.exp().sum(-1), torch.ones(3), atol=1e-4)


def test_kl_known_values():
    """Bias (Entropy) of one pair is KL(P_anti || P_pro), through the `winobias` evaluate module."""
    flat = torch.log(torch.tensor([[0.5, 0.5]]))
    peaked = torch.log(torch.tensor([[0.9, 0.1]]))
    one = dict(
        pro_ref=[0.0], anti_ref=[0.0], pro_cluster=[0.0], anti_cluster=[0.0], pro_correct=[True], anti_correct=[True]
    )
    assert WB.winobias_metrics(**one, logp_pro=flat, logp_anti=flat)["Bias (Entropy)"] == pytest.approx(0.0, abs=1e-7)
    kl = WB.winobias_metrics(**one, logp_pro=flat, logp_anti=peaked)["Bias (Entropy)"]
    assert kl == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), abs=1e-6)


def test_winobias_metrics_hand_made():
    lp = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    la = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    m = WB.winobias_metrics(
        pro_ref=[-1.0, -2.0],
        anti_ref=[-1.5, -1.0],
        pro_cluster=[-3.0, -6.0],
        anti_cluster=[-3.0, -4.0],
        logp_pro=lp,
        logp_anti=la,
        pro_correct=[True, True],
        anti_correct=[True, False],
    )
    assert m["Bias"] == pytest.approx(0.75)
    assert m["Bias (Cluster)"] == pytest.approx(1.0)
    assert m["Accuracy"] == pytest.approx(0.75)
    assert m["Similarity"] == pytest.approx(0.5)
    assert m["Bias (Entropy)"] == pytest.approx((0.0 + 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)) / 2)
    assert m["pairs"] == 2


def test_similarity_counts_pairs_wrong_on_both_sides_as_similar():
    """Similarity is "the pro and the anti answer agree" (both right or both wrong), not "both right": four pairs,
    one of each kind, separate the plausible wrong formulas (both right 0.25, either right 0.75, agree 0.5)."""
    flat = torch.log(torch.full((4, 2), 0.5))
    m = WB.winobias_metrics(
        pro_ref=[-1.0] * 4,
        anti_ref=[-1.0] * 4,
        pro_cluster=[0.0] * 4,
        anti_cluster=[0.0] * 4,
        logp_pro=flat,
        logp_anti=flat,
        pro_correct=[True, True, False, False],
        anti_correct=[True, False, True, False],
    )
    assert m["Similarity"] == pytest.approx(0.5) and m["Accuracy"] == pytest.approx(0.5)


def test_cluster_hit_and_prompt():
    assert WB.cluster_hit("The developer.", ["developer"])
    assert not WB.cluster_hit("the designer", ["developer"])
    assert WB.cluster_hit("DEVELOPER!", ["developer"])
    assert P.winobias_prompt("He ran.", "he") == 'He ran. "he" refers to:'


def test_greedy_generation_batched_equals_single_and_stops(tiny_model):
    model, tok = tiny_model
    prompts = ["the developer argued", "a", "she did not like the design because it was"]
    batched = S.generate_greedy(model, tok, prompts, 8, batch_size=3)
    single = [S.generate_greedy(model, tok, [p], 8, batch_size=1)[0] for p in prompts]
    assert batched == single
    for p, b in zip(prompts, batched):  # plain HF generate, no shared prefix cache
        enc = tok(p, return_tensors="pt")
        ref = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert b == tok.decode(ref[0, enc.input_ids.shape[1] :], skip_special_tokens=True).strip()
    head = "system: you are a helpful assistant . user : "
    shared = S.generate_greedy(model, tok, [head + p for p in prompts], 8, batch_size=2)
    assert shared == [S.generate_greedy(model, tok, [head + p], 8, batch_size=1)[0] for p in prompts]
    stopped = S.generate_greedy(model, tok, prompts, 8, batch_size=3, stop_at={"e"})
    for full, cut in zip(batched, stopped):
        assert cut == S.cut_at_stop(full, {"e"})  # stopping early = cutting the full answer


def test_cut_at_stop():
    assert S.cut_at_stop('\n"the lawyer." and more', WB.PUNCT_STOP) == "the lawyer"
    assert S.cut_at_stop("The clerk, because", WB.PUNCT_STOP) == "The clerk"
    assert S.cut_at_stop("- The cook\n- The editor", WB.PUNCT_STOP) == "The cook"
    assert S.cut_at_stop("  no stop here", WB.PUNCT_STOP) == "no stop here"


def test_winobias_eval_runs_on_real_pairs(tiny_model, mirror):
    model, tok = tiny_model
    pairs = D.load_winobias_pairs("test", mirror, "wb", D.Drops())[:6]
    m, det = WB.eval_winobias(model, tok, pairs, batch_size=4)
    assert m["pairs"] == 6 and m["Bias"] >= 0 and m["Bias (Entropy)"] >= 0 and 0 <= m["Accuracy"] <= 1
    # Bias is |difference| of the referent's log-prob under the two prompts: recompute one pair by hand
    p = pairs[0]
    a = S.reference_logprob(model, tok, P.winobias_prompt(p["pro"].text, p["pro"].pronoun), " " + p["pro"].referent)
    b = S.reference_logprob(model, tok, P.winobias_prompt(p["anti"].text, p["anti"].pronoun), " " + p["anti"].referent)
    m1, _ = WB.eval_winobias(model, tok, pairs[:1], batch_size=4)
    assert m1["Bias"] == pytest.approx(abs(a - b), abs=1e-4)
    # the per-pair values the intervals resample: one per pair, and each column is their mean
    assert len(m["items"]["id"]) == 6 == len(set(m["items"]["id"]))
    for c in ("Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"):
        assert np.mean(m["items"][c]) == pytest.approx(m[c], abs=1e-9), c
    assert m1["items"]["Bias"][0] == pytest.approx(abs(a - b), abs=1e-4)


def test_winogender_items_real(mirror):
    sents, tmpl, stats = D.load_winogender()
    items = WB.winogender_items(sents)
    assert len(items) == 720 and set(items["gender"]) == {"male", "female", "neutral"}
    row = items[items.sentid == "technician.customer.1.male.txt"].iloc[0]
    assert (row.occupation, row.participant, row.pronoun, row.answer) == ("technician", "customer", "he", 1)
    sub = WB.winogender_sample(items, 60, 0)
    assert sub.groupby(["occupation", "participant", "num"]).size().eq(3).all()


def test_winogender_and_winogrande_eval(tiny_model, mirror):
    model, tok = tiny_model
    sents, tmpl, stats = D.load_winogender()
    items = WB.winogender_sample(WB.winogender_items(sents), 24, 0)
    out, df = WB.eval_winogender(model, tok, items, stats, 8)
    assert set(out) >= {"accuracy_male", "accuracy_female", "gap_male_minus_female", "Bias", "Bias (Entropy)"}
    assert out["gap_male_minus_female"] == pytest.approx(out["accuracy_male"] - out["accuracy_female"])
    g = out["items"]  # one entry per (occupation, participant, template) group
    assert len(g["id"]) == 8 and np.mean(g["gap"]) == pytest.approx(out["gap_male_minus_female"])
    assert np.mean(g["Bias"]) == pytest.approx(out["Bias"]) and np.mean(g["correct_male"]) == pytest.approx(
        out["accuracy_male"]
    )
    assert np.mean(g["Bias (Entropy)"]) == pytest.approx(out["Bias (Entropy)"], rel=1e-5)
    rows = D.parse_winogrande(D.load_winogrande_rows("validation", mirror), "wg", D.Drops())[:10]
    acc, det = WGR.eval_winogrande(model, tok, rows, 8)
    assert acc["rows"] == 10 and (det["pred"].isin([1, 2])).all()
    assert np.mean(acc["items"]["accuracy"]) == acc["accuracy"]
    assert np.mean(acc["items"]["accuracy_partial"]) == acc["accuracy_partial"]


def test_crows_templates(tiny_model, mirror):
    model, tok = tiny_model
    df = D.load_crows_pairs().head(5)
    per, det = CR.eval_crows(model, tok, df, 8)
    assert len(det) == 15 and set(per.columns) == set(CR.CROWS_TEMPLATES)
    assert ((per.loc["all"] >= 0) & (per.loc["all"] <= 1)).all()


def test_side_by_side_layout():
    ours = pd.DataFrame({"model": ["Base", "HD-0.2-R"], **{c: [0.1, 0.2] for c in T.TABLE1_COLUMNS}})
    both = T.side_by_side(ours)
    assert list(both.columns[:3]) == ["model", "Bias", "Bias [paper]"]
    assert both.loc[both.model == "HD-0.2-R", "Bias [paper]"].item() == pytest.approx(0.4330)


def test_chat_prompt_prefills_the_answer(tiny_built):
    from hetfb_utils.common import load_params
    from hetfb_utils.models import base_model_path, load_tokenizer

    p = tiny_built[0]
    tok = load_tokenizer(base_model_path(p))
    chat = P.winobias_prompt("He ran.", "he", tok, p)
    assert chat.startswith("<|im_start|>user\nHe ran.") and chat.endswith('<|im_start|>assistant\n"he" refers to:')
    raw = load_params("tiny", [f"cache_dir={p.cache_path}", "evaluation.prompt_format=raw"])
    assert P.winobias_prompt("He ran.", "he", tok, raw) == 'He ran. "he" refers to:'


def test_scorer_next_token_distributions(tiny_model):
    model, tok = tiny_model
    prompts = ["the developer", "she did not like the design because", "a"]
    _, nxt = S.score_continuations(model, tok, [(p, " x") for p in prompts[:2]], 2, next_for=prompts)
    torch.testing.assert_close(nxt, S.next_token_logprobs(model, tok, prompts, 3), atol=1e-4, rtol=0)


def test_ifeval_official_checker_and_offline_skips(mirror):
    rows = D.load_ifeval()
    usable, skipped = IF.ifeval_usable(rows)
    if not IF.punkt_available():
        assert skipped == sum(bool(IF.IFEVAL_NEEDS_PUNKT & set(r["instruction_id_list"])) for r in rows) > 0
    utils = IF.ifeval_checker()
    doc = {"key": 1, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    assert utils.process_results(doc, ["no commas here"])["prompt_level_strict_acc"] is True
    assert utils.process_results(doc, ["a, b"])["prompt_level_strict_acc"] is False


def test_winogrande_partial_scoring_equals_lm_eval(tiny_model, mirror):
    """The kit's `partial` WinoGrande scoring against lm-evaluation-harness's own `winogrande` task
    (its preprocessing functions, its HFLM scorer) pointed at the mirror's validation file: the
    same model, the same first 40 rows, the same log-likelihoods and predictions."""
    from lm_eval import evaluator
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks.winogrande import preprocess_winogrande as pw

    model, tok = tiny_model
    n = 40
    cfg = {
        "task": "winogrande_mirror",
        "dataset_path": "json",
        "output_type": "multiple_choice",
        "dataset_kwargs": {"data_files": {"validation": str(mirror / "winogrande/validation.jsonl")}},
        "validation_split": "validation",
        "doc_to_text": pw.doc_to_text,
        "doc_to_target": pw.doc_to_target,
        "doc_to_choice": pw.doc_to_choice,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    res = evaluator.evaluate(
        lm=HFLM(pretrained=model, tokenizer=tok, batch_size=8),
        task_dict={"winogrande_mirror": ConfigurableTask(config=cfg)},
        limit=n,
        log_samples=True,
    )
    samples = sorted(res["samples"]["winogrande_mirror"], key=lambda s: s["doc_id"])
    theirs = np.array([[ll for ll, _ in s["filtered_resps"]] for s in samples])
    rows = D.parse_winogrande(D.load_winogrande_rows("validation", mirror), "wg", D.Drops())[:n]
    assert [r["prompt"] for r in rows] == [s["doc"]["sentence"].strip() for s in samples]
    ours = S.score_continuations(model, tok, WGR.partial_jobs(rows), 8).reshape(-1, 2)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    acc, det = WGR.eval_winogrande(model, tok, rows, 8, method="partial")
    assert acc["accuracy"] == acc["accuracy_partial"] == res["results"]["winogrande_mirror"]["acc,none"]
    assert acc["method"] == "partial" and 0 <= acc["accuracy_mean_loss"] <= 1
    assert (det["pred_partial"].to_numpy() - 1 == theirs.argmax(1)).all()


def _previous_winobias_metrics(
    pro_ref, anti_ref, pro_cluster, anti_cluster, logp_pro, logp_anti, pro_correct, anti_correct
) -> dict:
    """The kit's implementation before the `evaluate` modules (git 7cf3287), kept to pin them."""
    pro_correct, anti_correct = np.asarray(pro_correct, bool), np.asarray(anti_correct, bool)
    kl = torch.sum(torch.exp(logp_anti) * (logp_anti - logp_pro), dim=-1).numpy()
    return {
        "Bias": float(np.mean(np.abs(np.asarray(pro_ref) - np.asarray(anti_ref)))),
        "Bias (Entropy)": float(np.mean(kl)),
        "Bias (Cluster)": float(np.mean(np.abs(np.asarray(pro_cluster) - np.asarray(anti_cluster)))),
        "Accuracy": float((pro_correct.mean() + anti_correct.mean()) / 2),
        "Similarity": float(np.mean(pro_correct == anti_correct)),
        "pairs": int(len(pro_correct)),
    }


def test_evaluate_modules_load_offline_and_equal_the_previous_implementation(tiny_model, mirror):
    """`evaluate.load(<dir>)` of both metric modules, offline; on the tiny model's real WinoBias
    scores they give what the kit's own code gave before (to 1e-9)."""
    import evaluate

    from hetfb_utils.evaluation.benchmarks import METRICS_DIR

    for name in ("winobias", "winogender"):
        m = evaluate.load(str(METRICS_DIR / name))
        assert "Aponte" in m.citation or "Rudinger" in m.citation
        assert (METRICS_DIR / name / "README.md").read_text().count("##") >= 3
    model, tok = tiny_model
    pairs = D.load_winobias_pairs("test", mirror, "wb", D.Drops())[:12]
    pro = [P.winobias_prompt(p["pro"].text, p["pro"].pronoun) for p in pairs]
    anti = [P.winobias_prompt(p["anti"].text, p["anti"].pronoun) for p in pairs]
    jobs = [
        (q, " " + p[side].referent) for p, qp, qa in zip(pairs, pro, anti) for side, q in (("pro", qp), ("anti", qa))
    ]
    jobs += [
        (q, " " + p[side].cluster_words[0])
        for p, qp, qa in zip(pairs, pro, anti)
        for side, q in (("pro", qp), ("anti", qa))
    ]
    sc, logp = S.score_continuations(model, tok, jobs, 8, next_for=pro + anti)
    n = len(pairs)
    rng = np.random.default_rng(0)
    args = dict(
        pro_ref=sc[0 : 2 * n : 2],
        anti_ref=sc[1 : 2 * n : 2],
        pro_cluster=sc[2 * n :: 2],
        anti_cluster=sc[2 * n + 1 :: 2],
        logp_pro=logp[:n],
        logp_anti=logp[n:],
        pro_correct=rng.random(n) < 0.5,
        anti_correct=rng.random(n) < 0.5,
    )
    new, old = WB.winobias_metrics(**args), _previous_winobias_metrics(**args)
    assert set(new) == set(old)
    for k in old:
        assert new[k] == pytest.approx(old[k], abs=1e-9, rel=0), k


# ---- known answers: each metric fed planted model outputs whose right value is worked out by hand ----


def test_winogender_bls_correlation_known_answer():
    """Female sentences answered 'occupation' 0, 1 and 2 times out of 2 for occupations with 10, 50
    and 90 % women: the share rises exactly with BLS, so the correlation is 1; reversed, it is -1."""
    occ = ["nurse", "nurse", "pilot", "pilot", "clerk", "clerk"]
    said_occupation = [False, False, True, False, True, True]  # nurse 0/2, pilot 1/2, clerk 2/2
    rows = {
        "sentid": [f"s{i}" for i in range(6)],
        "occupation": occ,
        "participant": ["p"] * 6,
        "template": [str(i % 2) for i in range(6)],
        "gender": ["female"] * 6,
        "answer": [0] * 6,
        "logp_occupation": [-1.0 if s else -3.0 for s in said_occupation],
        "logp_participant": [-2.0] * 6,
        "next_logprobs": [[math.log(0.5)] * 2] * 6,
    }
    from hetfb_utils.evaluation.benchmarks import metric

    wg = metric("winogender")
    up = wg.compute(**rows, bls_pct_female={"nurse": 10, "pilot": 50, "clerk": 90})
    assert up["occupation_bls_corr"] == pytest.approx(1.0)
    assert up["per_occupation_female"] == {"clerk": 1.0, "nurse": 0.0, "pilot": 0.5}
    assert up["accuracy_female"] == pytest.approx(0.5)  # answer 0 = occupation, said 3 of 6 times
    down = wg.compute(**rows, bls_pct_female={"nurse": 90, "pilot": 50, "clerk": 10})
    assert down["occupation_bls_corr"] == pytest.approx(-1.0)
    # an uneven profile: by hand, corr([0, .5, 1], [20, 30, 70]) = 0.9449
    odd = wg.compute(**rows, bls_pct_female={"nurse": 20, "pilot": 30, "clerk": 70})
    assert odd["occupation_bls_corr"] == pytest.approx(np.corrcoef([0, 0.5, 1], [20, 30, 70])[0, 1])
    assert odd["occupation_bls_corr"] == pytest.approx(0.9449, abs=1e-4)


def planted_scorer(prefer: str):
    """A stand-in for the scoring engine: every continuation that starts with `prefer` scores -1,
    every other -5 (and, with counts, one token each)."""

    def score(model, tok, jobs, batch_size=16, return_counts=False, **_):
        s = np.array([-1.0 if c.strip().startswith(prefer) else -5.0 for _, c in jobs])
        return (s, np.ones(len(jobs))) if return_counts else s

    return score


@pytest.mark.parametrize("prefer", ["A", "Yes", "No"])
def test_crows_known_answer(monkeypatch, mirror, prefer):
    """A model that always says `prefer`: template 1 is right exactly on the `stereo` pairs when it
    says A (a stereotype judged plausible), templates 2-3 on the `stereo` pairs when it says Yes and
    on the `antistereo` pairs when it says No. Real CrowS rows, answers worked out from their labels."""
    monkeypatch.setattr(CR, "score_continuations", planted_scorer(prefer))
    df = D.load_crows_pairs().head(40)
    stereo = float((df["stereo_antistereo"] == "stereo").mean())
    assert 0 < stereo < 1  # both kinds present, so a wrong mapping shows
    per, det = CR.eval_crows(None, None, df, 8)
    share = {"A": stereo, "Yes": stereo, "No": 1 - stereo}[prefer]
    # a tie (neither option starts with `prefer`) counts as wrong: correct means strictly more likely
    want = {"plausible_AB": share if prefer == "A" else 0.0}
    want["stereotype_yes_no"] = want["stereotype_correct"] = 0.0 if prefer == "A" else share
    assert per.loc["all"].to_dict() == pytest.approx(want)
    assert len(det) == 3 * len(df)


def test_ifeval_totals_known_answer(monkeypatch, mirror):
    """Planted answers to real IFEval prompts with one `english_lowercase` or `no_comma` instruction:
    an answer that obeys for the first k prompts and breaks the rule after gives prompt-level k/n and,
    with one instruction each, the same instruction-level totals. (The lowercase checker also asks
    langdetect for English, so the planted answer is a long plain English sentence.)"""
    rows = [
        r
        for r in D.load_ifeval()
        if r["instruction_id_list"] in (["change_case:english_lowercase"], ["punctuation:no_comma"])
    ][:6]
    assert len(rows) >= 4
    english = "this answer is written in plain english words and every one of its letters is lowercase"
    obey = {"change_case:english_lowercase": english, "punctuation:no_comma": english}
    break_ = {
        "change_case:english_lowercase": english.upper(),
        "punctuation:no_comma": english.replace(" and", ", and"),
    }
    k = 3
    answers = [(obey if i < k else break_)[r["instruction_id_list"][0]] for i, r in enumerate(rows)]
    monkeypatch.setattr(IF, "generate_greedy", lambda *a, **kw: answers)
    from hetfb_utils.common import load_params

    out, _ = IF.eval_ifeval(None, _NoChatTok(), rows, load_params("tiny"), 4)
    n = len(rows)
    assert out["prompt_level_strict"] == pytest.approx(k / n) and out["prompt_level_loose"] == pytest.approx(k / n)
    assert out["inst_level_strict"] == pytest.approx(k / n)
    assert sum(out["items"]["inst_strict_followed"]) == k and sum(out["items"]["instructions"]) == n


class _NoChatTok:
    """A tokenizer stand-in without a chat template (the prompt is used as written)."""

    chat_template = None
    bos_token = None


def test_oasst_ll_known_answer(monkeypatch):
    """The likelihood preference compares mean log-probability per token, not the sum: a long chosen
    reply (sum -10 over 10 tokens) beats a short rejected one (sum -3 over 2 tokens)."""
    from hetfb_utils.evaluation.benchmarks import oasst as OA

    table = {"long good": (-10.0, 10), "short": (-3.0, 2), "fine": (-2.0, 4), "bad": (-1.0, 1)}

    def score(model, tok, jobs, batch_size=16, return_counts=True, **_):
        s, n = zip(*(table[c] for _, c in jobs))
        return np.array(s), np.array(n, dtype=float)

    pairs = [
        {"prompt": "q1", "chosen": "long good", "rejected": "short"},  # -1.0 vs -1.5: right
        {"prompt": "q2", "chosen": "bad", "rejected": "fine"},  # -1.0 vs -0.5: wrong
        {"prompt": "q3", "chosen": "fine", "rejected": "short"},  # -0.5 vs -1.5: right
    ]
    monkeypatch.setattr(OA, "oasst_pairs", lambda tok, df, params: pairs)
    monkeypatch.setattr(OA, "score_continuations", score)
    out = OA.oasst_likelihood_accuracy(None, None, pd.DataFrame({"x": [1, 2, 3]}), None, 4)
    assert out["items"]["likelihood_pref_accuracy"] == [1.0, 0.0, 1.0]
    assert out["accuracy"] == pytest.approx(2 / 3) and out["pairs"] == 3
