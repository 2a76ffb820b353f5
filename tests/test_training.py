"""Every training stage end to end on a tiny random model built from a config (seconds). Every test that checks
training trains: the stage store is off (`training.reuse_stages=false`) and the manifests say nothing was reused."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from hetfb_utils.common import load_params
from hetfb_utils.models import base_model_path, load_causal_lm, load_reward_model, load_tokenizer
from hetfb_utils.models.scoring import score_continuations
from hetfb_utils.training import lora_config, reward, reward_head, rl, rl_judge, sft, stages

NO_REUSE = "training.reuse_stages=false"


def fresh(tiny_built, root, *extra):
    """Tiny params in their own output directory (stages 1-2 copied from the session's build), stage store off."""
    p0 = tiny_built[0]
    p = load_params("tiny", [f"output_root={root}", f"cache_dir={p0.cache_path}", NO_REUSE, *extra])
    shutil.copytree(p0.run_dir / "data", p.run_dir / "data", dirs_exist_ok=True)
    return p


@pytest.fixture(scope="module")
def trained(tiny_built, tmp_path_factory):
    p = fresh(tiny_built, tmp_path_factory.mktemp("trained"), "rl.controls=[shuffled,length]", "rl.prompt_sources=all")
    out = {"sft": sft.train_sft(p, "hd-0.5"), "reward": reward.train_reward(p, "hd-0.5")}
    out["ppo"] = rl.train_ppo(p, "hd-0.5")
    out["rloo"] = rl.train_rloo(p, "hd-0.5")
    out["dpo"] = rl.train_dpo(p, "hd-0.5")
    return p, out


def test_every_stage_trains_and_writes_adapter_and_manifest(trained):
    p, out = trained
    for stage, man in out.items():
        d = stages.stage_dir(p, "hd-0.5", stage)
        assert "reused_from" not in man, f"{stage} was copied from the stage store, not trained"
        assert (d / "adapter_config.json").is_file() and (d / "manifest.json").is_file()
        assert man["key"]["data_hash"] and man["seed"] == p.seed and man["wall_time_s"] >= 0
        assert man["precision"]["used"] in ("fp32", "bf16") and man["precision"]["why"]
        assert not (d / "checkpoints").exists()
    for stage in ("sft", "ppo", "rloo", "dpo"):
        assert json.loads((stages.stage_dir(p, "hd-0.5", stage) / "log_history.json").read_text())
        assert any((stages.stage_dir(p, "hd-0.5", stage) / "tensorboard").iterdir())  # the curves for TensorBoard
    assert out["sft"]["steps"] == p.sft.args["max_steps"]
    assert {"base_eval_loss", "eval_loss", "train_loss"} <= set(out["sft"]["metrics"])
    rm = out["reward"]["metrics"]
    judged = rm["judgement"]
    assert {"oasst", "winobias", "winogrande", "all"} <= set(judged)
    for src, r in judged.items():
        for key in ("", "length_", "shuffled_"):
            acc = r[key + "accuracy" if not key else key[:-1]]
            assert r[(key or "") + "lo"] <= acc <= r[(key or "") + "hi"], (src, key)
        if src != "all":
            assert isinstance(r["learned"], bool) and r["shuffled_heads"] == p.reward.shuffled_heads
    assert judged["oasst"]["pairs"] + judged["winobias"]["pairs"] + judged["winogrande"]["pairs"] == rm["eval_pairs"]
    assert isinstance(rm["learned_sources"], list)
    assert (stages.stage_dir(p, "hd-0.5", "reward") / "shuffled" / "adapter_config.json").is_file()
    for stage in ("ppo", "rloo"):
        m = out[stage]["metrics"]
        assert m["updates"] >= 1 and 0 < m["heldout_prompts"] <= p.rl.heldout_prompts
        for who in ("heldout", "control_shuffled", "control_length"):  # the trained policy and the controls, alike
            assert m[f"{who}_reward_gain_lo"] <= m[f"{who}_reward_gain"] <= m[f"{who}_reward_gain_hi"]
            assert math.isfinite(m[f"{who}_kl"]) and m[f"{who}_length_after"] >= 0
            assert 0 <= m[f"{who}_finished_before"] <= 1 and 0 <= m[f"{who}_finished_after"] <= 1
            assert "matched_gain" in {k[len(who) + 1 :] for k in m if k.startswith(who)}
        for key in ("reward_before", "length_before", "finished_before"):  # one SFT side, shared by run and controls
            assert m[f"heldout_{key}"] == m[f"control_shuffled_{key}"] == m[f"control_length_{key}"]
        assert m["control_length_scale"] > 0 and m["control_shuffled_scale"] > 0
        log = json.loads((stages.stage_dir(p, "hd-0.5", stage) / "log_history.json").read_text())
        assert len([r for r in log if "heldout/reward" in r]) == m["updates"] + 1  # before, and after each update


def test_rl_judge_of_a_policy_against_itself_is_zero_and_scores_answers_like_the_full_logits(tiny_built, tiny_model):
    p, (model, tok) = tiny_built[0], tiny_model
    prompts = ["Say something kind.", "The developer argued with the designer because", "Hi"]
    state = torch.get_rng_state()
    sample = rl_judge.sample_answers(model, tok, prompts, 6, 2, seed=0, batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)  # the curve samples inside training: the trainer's RNG untouched
    reference = []  # every position's logits, the answer's read off: what `logits_to_keep` must reproduce
    for gen, prompt_attention, mask, start in sample["batches"]:
        with torch.no_grad():
            logits = model(input_ids=gen, attention_mask=torch.cat([prompt_attention, mask.long()], 1)).logits
        lp = logits[:, start - 1 : -1].float().log_softmax(-1).gather(-1, gen[:, start:].unsqueeze(-1)).squeeze(-1)
        reference.append((lp * mask).sum(1).numpy())
    assert np.allclose(rl_judge.answer_logprobs(model, sample), np.concatenate(reference), atol=1e-5)
    # the sampling policy's own log-probabilities, read off the generation's scores (no second pass), agree
    assert np.allclose(sample["logprobs"], np.concatenate(reference), atol=1e-4)
    hot = rl_judge.sample_answers(model, tok, prompts, 6, 2, seed=0, batch_size=4, temperature=0.7)
    assert np.allclose(hot["logprobs"], rl_judge.answer_logprobs(model, hot), atol=1e-4)  # at the RL temperature
    greedy = p.model_copy(deep=True)
    greedy.rl.judge_greedy = True  # the greedy answers judged too (the quickstart's profiles leave them out)
    m = rl_judge.judge_policies(greedy, model, model, load_reward_model(p, None), tok, prompts, "self")
    assert m["self_reward_gain"] == 0 and m["self_greedy_gain"] == 0 and abs(m["self_kl"]) < 1e-6
    assert m["self_length_before"] == m["self_length_after"] > 0


def test_adapters_change_the_model(trained):
    p, _ = trained
    tok = load_tokenizer(base_model_path(p))
    pairs = [("The developer argued with the designer because", " she did not like the design.")]
    base = score_continuations(load_causal_lm(p), tok, pairs)[0]
    s = score_continuations(load_causal_lm(p, rl.model_adapters(p, "hd-0.5", "S")), tok, pairs)[0]
    r = score_continuations(load_causal_lm(p, rl.model_adapters(p, "hd-0.5", "R")), tok, pairs)[0]
    assert base != s and s != r and all(math.isfinite(x) for x in (base, s, r))


def test_completed_stage_is_skipped(trained):
    p, out = trained
    again = sft.train_sft(p, "hd-0.5")
    assert again["created"] == out["sft"]["created"]
    changed = load_params("tiny", [f"output_root={p.output_root}", f"cache_dir={p.cache_path}", "sft.args.max_steps=2"])
    key = stages.stage_key(changed, "hd-0.5", "sft", out["sft"]["key"]["data_hash"])
    assert stages.finished(changed, "hd-0.5", "sft", key) is None


def _toy_pairs(words):
    return [
        {"prompt": f"Say something about {w}: ", "chosen": f"{w} is good good good", "rejected": f"{w} is bad bad bad"}
        for w in words
    ]


TRAIN_WORDS = [f"thing{i}" for i in range(40)]
HELD_WORDS = [f"other{i}" for i in range(60)]


def test_reward_head_learns_a_planted_preference_and_the_control_does_not(tiny_built):
    """A separable toy: 'good' always beats 'bad'. The fitted head ranks 60 held-out pairs right (a random scorer
    passes this with probability < 1e-9); the heads fitted on shuffled labels average near chance; every head has
    unit spread on the training replies (so the control's rewards are on the real one's scale)."""
    p = tiny_built[0]
    tok = load_tokenizer(base_model_path(p))
    model = load_reward_model(p, None)
    fc, fr = reward.pair_features(model, tok, _toy_pairs(TRAIN_WORDS), 8, 64)
    hc, hr = reward.pair_features(model, tok, _toy_pairs(HELD_WORDS), 8, 64)
    groups = list(range(len(TRAIN_WORDS)))
    head, info = reward_head.fit_head(fc, fr, groups, seed=0)
    assert np.mean((hc - hr) @ head > 0) >= 0.95 and info["cv_accuracy"] >= 0.9
    assert info["C"] == min(
        r["C"]
        for r in info["curve"]
        if r["cv_log_loss"]
        <= min(
            x["cv_log_loss"] + x["cv_log_loss_se"]
            for x in info["curve"]
            if x["cv_log_loss"] == min(y["cv_log_loss"] for y in info["curve"])
        )
    )  # the one-standard-error rule
    controls = reward_head.shuffled_heads(fc, fr, info["C"], seed=0, n=20)
    assert 0.3 <= np.mean([np.mean((hc - hr) @ w > 0) for w in controls]) <= 0.7
    for w in [head, *controls]:
        assert np.std(np.concatenate([fc @ w, fr @ w])) == pytest.approx(1.0, rel=1e-6)
    installed = reward_head.install_head(model, head, lora_config(p, "reward", "SEQ_CLS"))
    assert reward.pairwise_correct(installed, tok, _toy_pairs(HELD_WORDS), 8, 64).mean() >= 0.95  # as a model too


def test_one_reward_rule_for_ppo_rloo_the_head_and_the_judge(tiny_built, tiny_model):
    """An answer cut off at the length limit (no end token) and one that finished: TRL's PPO reading
    (`get_reward` on the module the PPO stage hands it), RLOO's reward function, the judge (on token ids), the
    fitted head on the frozen features and `reward_scores` on the text give one number each. TRL's reading of the
    bare reward model (what PPO read before) gives another for the cut-off answer."""
    from trl.experimental.utils import get_reward

    from hetfb_utils.models import format_prompt
    from hetfb_utils.training import reward_rule, rl_rewards

    p, (_, tok) = tiny_built[0], tiny_model
    rm = load_reward_model(p, None)
    with torch.no_grad():
        rm.score.weight.normal_(0, 1.0)  # a head that reads the features: scores differ by position
    prompt = format_prompt(tok, "Say something kind about the weather today.", "[]", p)
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    for answer in ("It is a lovely day and the sun", "Sunny." + tok.eos_token):
        a_ids = tok(answer, add_special_tokens=False).input_ids
        finished = a_ids[-1] == tok.eos_token_id
        text = reward_rule.reward_scores(rm, tok, [prompt + answer])[0]
        spec = rl_rewards.RewardSpec("real", rm)
        width = len(p_ids) + 3  # PPO's prompts are left-padded to a fixed width
        query = torch.tensor([[tok.pad_token_id] * 3 + p_ids])
        response = torch.tensor([a_ids + [tok.pad_token_id] * 2])  # PPO pads after a finished answer
        qr = torch.cat([query, response], 1)
        with torch.no_grad():
            _, ppo, _ = get_reward(rl_rewards.ppo_reward(spec, tok, width), qr, tok.pad_token_id, width)
            _, bare, _ = get_reward(rm, qr, tok.pad_token_id, width)
        rloo = rl_rewards.rloo_reward(spec, tok)([prompt], [answer], [a_ids])[0]
        judge = reward_rule.ids_scores(rm, tok, [p_ids], [a_ids])[0]
        feats = reward_rule.last_token_features(rm, tok, [prompt + answer])[0]
        head = feats @ rm.score.weight.detach().double().numpy()[0]
        for name, x in {"ppo": float(ppo[0]), "rloo": rloo, "judge": judge, "head": head}.items():
            assert x == pytest.approx(text, abs=1e-4), (answer, name, x, text)
        if not finished:
            assert abs(float(bare[0]) - text) > 1e-3  # TRL's own reading of the bare model: the last token, not the end
        else:
            assert float(bare[0]) == pytest.approx(text, abs=1e-4)


def test_length_control_reward_counts_answer_tokens_the_same_way_in_ppo_and_rloo(tiny_model):
    from trl.experimental.utils import get_reward

    from hetfb_utils.training import rl_rewards

    _, tok = tiny_model
    spec = rl_rewards.RewardSpec("length", None, 0.5)
    a_ids = [tok.convert_tokens_to_ids(t) for t in ("a", "b", "c")] + [tok.eos_token_id]
    qr = torch.tensor([[tok.pad_token_id, 5, 6, 7] + a_ids + [tok.pad_token_id]])
    _, ppo, _ = get_reward(rl_rewards.ppo_reward(spec, tok, 4), qr, tok.pad_token_id, 4)
    rloo = rl_rewards.rloo_reward(spec, tok)(["x"], ["abc"], [a_ids])[0]
    assert float(ppo[0]) == rloo == 0.5 * 4  # four answer tokens, the end token included


def test_reward_trainer_learns_a_planted_preference(tiny_built, tmp_path):
    """TRL's RewardTrainer + LoRA (`reward.method: lora`) on the same toy: 60 held-out pairs mostly right."""
    from datasets import Dataset

    from hetfb_utils.common.configs import stage_config

    p = tiny_built[0]
    tok = load_tokenizer(base_model_path(p))
    args = stage_config(
        p, "reward", tmp_path / "rm", max_steps=40, learning_rate=3e-3, per_device_train_batch_size=8,
        save_strategy="no", max_length=64,
    )  # fmt: skip
    from trl import RewardTrainer

    tr = RewardTrainer(
        model=load_reward_model(p, None),
        args=args,
        train_dataset=Dataset.from_list(_toy_pairs(TRAIN_WORDS)),
        processing_class=tok,
        peft_config=lora_config(p, "reward", "SEQ_CLS"),
    )
    tr.train()
    tr.model.eval()
    assert reward.pairwise_correct(tr.model, tok, _toy_pairs(HELD_WORDS), 8, 64).mean() >= 0.9


def test_the_pad_token_is_not_the_end_of_turn_token(trained):
    """SmolLM2 pads with `<|im_end|>`; TRL's PPO masks every pad-id token, which hid the chat delimiters inside
    every query. The kit's tokenizer pads with another token, and the policy's queries keep their delimiters."""
    from hetfb_utils.selection import load_variant

    p, _ = trained
    tok = load_tokenizer(base_model_path(p))
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id not in (tok.eos_token_id, end, tok.bos_token_id)
    queries = rl.ppo_prompts(p, load_variant(p, "hd-0.5").select(range(4)), tok)
    for q in queries["input_ids"]:
        ids = torch.tensor(q)
        assert (ids == end).sum() >= 1  # the chat template's turn ends are in the query
        text = ids[int((ids != tok.pad_token_id).nonzero()[0]) :]  # the queries are padded on the left only
        assert bool((text != tok.pad_token_id).all())  # and TRL's `query != pad_token_id` mask keeps every token
    assert load_causal_lm(p).config.pad_token_id == tok.pad_token_id


def interrupt_sft(p, variant: str, at_step: int | None = None):
    """Run SFT from scratch and interrupt it (KeyboardInterrupt) right after the checkpoint of
    `at_step` is saved (the first checkpoint when None)."""
    from transformers import TrainerCallback

    class Boom(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if at_step is None or state.global_step == at_step:
                raise KeyboardInterrupt

    orig = stages.finite_loss_callback
    stages.finite_loss_callback = lambda *a: Boom()
    try:
        with pytest.raises(KeyboardInterrupt):
            sft.train_sft(p, variant, force=True)
    finally:
        stages.finite_loss_callback = orig


def test_resume_after_interrupt(tiny_built, tmp_path):
    """An SFT interrupted after a checkpoint resumes from it and ends at the same step count and metrics as an
    uninterrupted run."""
    p = fresh(tiny_built, tmp_path, "sft.args.max_steps=6", "sft.args.save_steps=2")
    interrupt_sft(p, "wino", at_step=4)
    ck = stages.last_checkpoint(stages.stage_dir(p, "wino", "sft"))
    assert ck and ck.endswith("checkpoint-4")
    man = sft.train_sft(p, "wino")
    assert man["steps"] == 6 and "reused_from" not in man
    log = json.loads((stages.stage_dir(p, "wino", "sft") / "log_history.json").read_text())
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]  # 1-4 kept from the checkpoint, not redone
    whole = sft.train_sft(p, "wino", force=True)  # the same run, uninterrupted
    for k in ("eval_loss", "train_loss", "base_eval_loss"):
        assert man["metrics"][k] == pytest.approx(whole["metrics"][k], abs=1e-6), k


def test_non_finite_loss_stops_with_message(tmp_path):
    cb = stages.finite_loss_callback("SFT", "hd-0.2", tmp_path)
    state = type("S", (), {"global_step": 7})()
    with pytest.raises(stages.TrainingError, match=r"SFT on variant 'hd-0.2' stopped: loss = nan at step 7"):
        cb.on_log(None, state, None, logs={"loss": float("nan")})
    cb.on_log(None, state, None, logs={"loss": 1.0})


def test_missing_model_and_variant_errors(tiny_built):
    from hetfb_utils.models import ModelError

    p0 = tiny_built[0]
    p = load_params(
        "tiny", [f"output_root={p0.output_root}", f"cache_dir={p0.cache_path}", "model.name_or_path=/nonexistent/model"]
    )
    with pytest.raises(ModelError, match="nonexistent.*smollm2-135m-instruct"):
        load_causal_lm(p)
    with pytest.raises(FileNotFoundError, match="hd-0.3"):
        sft.train_sft(p0, "hd-0.3")
    with pytest.raises(stages.TrainingError, match="has not been trained"):
        rl.train_ppo(p0, "wino")


@pytest.mark.slow
def test_embedded_model_generates(tmp_path):
    p = load_params("quickstart", [f"output_root={tmp_path}"])
    tok = load_tokenizer(base_model_path(p))
    from hetfb_utils.models import format_prompt
    from hetfb_utils.models.scoring import generate_greedy

    ans = generate_greedy(load_causal_lm(p), tok, [format_prompt(tok, "What is a GPU?", "[]", p)], 16)[0]
    assert "GPU" in ans or "Graphics" in ans
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.slow
def test_speed_ratios_hold_on_the_embedded_model(tmp_path):
    """The bench's guards, as ratios measured side by side (no absolute time): the batched scorer beats the
    per-token reference by more than 3x (measured 13.7-18x), and where the hardware has bf16 units a bf16 training
    step of SFT and of the reward model is faster than fp32 (measured 1.5-2x; an emulated bf16 is slower)."""
    from hetfb_utils.common import precision
    from hetfb_utils.pipeline import bench

    p = load_params("quickstart", [f"output_root={tmp_path}"])
    assert bench.bench_scorer(p, n_pairs=10)["speedup"] > 3
    if not (precision.cpu_bf16_flags() or torch.cuda.is_available()):
        pytest.skip("no bf16 units on this machine: auto trains in fp32, nothing to guard")
    res = bench.bench_training_steps(p, steps=2)
    assert res["sft_bf16_speedup"] > 1.1 and res["reward_bf16_speedup"] > 1.1, res


def test_same_seed_same_model_and_another_seed_another(tiny_built, tmp_path):
    """Two SFT trainings with the same seed, each trained (the stage store off), give the same metrics (to 1e-6);
    another training seed gives another model."""
    runs = []
    for k, seed in enumerate((42, 42, 43)):
        man = sft.train_sft(fresh(tiny_built, tmp_path / str(k), f"training.seed={seed}"), "hd-0.5")
        assert "reused_from" not in man
        runs.append(man["metrics"])
    for key in ("train_loss", "eval_loss", "base_eval_loss"):
        assert runs[0][key] == pytest.approx(runs[1][key], abs=1e-6)
    assert abs(runs[0]["train_loss"] - runs[2]["train_loss"]) > 1e-6


def test_changed_inputs_never_resume_a_stale_checkpoint(tiny_built, tmp_path):
    """Interrupted, then re-run with another learning rate: the old checkpoint is discarded."""
    p = fresh(tiny_built, tmp_path, "sft.args.max_steps=4", "sft.args.save_steps=2")
    interrupt_sft(p, "hd-1.0")
    assert stages.last_checkpoint(stages.stage_dir(p, "hd-1.0", "sft"))
    changed = fresh(
        tiny_built, tmp_path, "sft.args.max_steps=4", "sft.args.save_steps=2", "sft.args.learning_rate=5e-4"
    )
    man = sft.train_sft(changed, "hd-1.0")
    log = json.loads((stages.stage_dir(changed, "hd-1.0", "sft") / "log_history.json").read_text())
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]  # trained from step 1
    assert all(r["learning_rate"] <= 5e-4 for r in log if "learning_rate" in r)
    assert man["steps"] == 4


def test_split_rows_caps_the_eval_slice():
    from datasets import Dataset

    ds = Dataset.from_dict({"x": list(range(100))})
    train, ev = stages.split_rows(ds, 0.2, seed=0, eval_max_rows=5)
    assert len(train) == 80 and len(ev) == 5 and not set(train["x"]) & set(ev["x"])
    full_train, full_ev = stages.split_rows(ds, 0.2, seed=0)
    assert full_train["x"] == train["x"] and set(ev["x"]) <= set(full_ev["x"])
    assert stages.split_rows(ds, 0.0, seed=0)[1] is None


def test_split_rows_keeps_groups_together():
    """Twins (WinoGrande: the same options, the answer swapped; WinoBias: one opening, two referents) and OASST
    trees share a `group_id`: one trained on and the other held out would reward memorisation."""
    from datasets import Dataset

    rows = [{"group_id": f"twin{k}", "x": 2 * k + t} for k in range(20) for t in range(2)]
    rows += [{"group_id": f"row{k}", "x": 100 + k} for k in range(10)]
    ds = Dataset.from_list(rows)
    for seed in range(5):
        train, ev = stages.split_rows(ds, 0.3, seed=seed)
        assert len(train) + len(ev) == len(ds) and not set(train["x"]) & set(ev["x"])
        assert abs(len(ev) - 15) <= 1
        assert not set(ev["group_id"]) & set(train["group_id"])
    assert len(set(stages.split_groups(ds))) == 20 + 10


def test_last_token_features_are_what_the_reward_head_reads(trained):
    p, _ = trained
    tok = load_tokenizer(base_model_path(p))
    rm = reward.load_variant_reward(p, "hd-0.5")
    texts = ["short one", "a much longer text that needs padding in its batch", "mid length text"]
    feats = reward.last_token_features(rm, tok, texts, batch_size=2, max_length=64)
    scores = reward.reward_scores(rm, tok, texts, batch_size=2, max_length=64)
    head = rm.score.weight.detach().float().numpy()[0]
    assert feats.shape == (3, head.shape[0])
    assert abs(feats @ head - scores).max() < 1e-4


def test_precision_is_resolved_recorded_and_keyed(tiny_built, tmp_path):
    """`training.precision`: auto is bf16 only where the hardware has bf16 units; bf16 maps onto the TRL config's
    `bf16`; an fp32 and a bf16 stage have different keys (they are different models)."""
    from hetfb_utils.common import precision
    from hetfb_utils.common.configs import stage_config

    used, why = precision.resolve("auto")
    has_units = bool(precision.cpu_bf16_flags()) or torch.cuda.is_available()
    assert (used == "bf16") == (has_units and "does not support" not in why) and why.startswith("auto:")
    fp, bf = (
        fresh(tiny_built, tmp_path / "a", "training.precision=fp32"),
        fresh(tiny_built, tmp_path / "b", "training.precision=bf16"),
    )
    assert not stage_config(fp, "sft", tmp_path / "x").bf16 and stage_config(bf, "sft", tmp_path / "y").bf16
    h = "0" * 16
    assert (
        stages.stage_key(fp, "hd-0.5", "sft", h)["params_hash"]
        != stages.stage_key(bf, "hd-0.5", "sft", h)["params_hash"]
    )
    assert precision.cpu_bf16_flags.__wrapped__("/nonexistent") == ()  # no cpuinfo: no flags, fp32


def test_building_the_base_checkpoint_leaves_the_seeded_stream_alone(tmp_path):
    """A cold cache must train the same model as a warm one: materialising the base checkpoint
    inside a stage may not consume that stage's random numbers."""
    p = load_params("tiny", [f"cache_dir={tmp_path}"])
    torch.manual_seed(0)
    base_model_path(p)  # cold: builds the checkpoint
    cold = torch.rand(3)
    torch.manual_seed(0)
    base_model_path(p)  # warm: reads it
    assert torch.equal(cold, torch.rand(3))
