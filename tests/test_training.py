"""Every training stage end to end on a tiny random model built from a config (seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hetfb_utils.common import load_params
from hetfb_utils.models import base_model_path, load_causal_lm, load_reward_model, load_tokenizer
from hetfb_utils.models.scoring import score_continuations
from hetfb_utils.training import probe, reward, rl, sft, stages


@pytest.fixture(scope="module")
def trained(tiny_built):
    p = tiny_built[0]
    out = {
        "sft": sft.train_sft(p, "hd-0.5"),
        "reward": reward.train_reward(p, "hd-0.5"),
        "ppo": rl.train_ppo(p, "hd-0.5"),
        "dpo": rl.train_dpo(p, "hd-0.5"),
    }
    return p, out


def test_every_stage_writes_adapter_and_manifest(trained):
    p, out = trained
    for stage, man in out.items():
        d = stages.stage_dir(p, "hd-0.5", stage)
        assert (d / "adapter_config.json").is_file() and (d / "manifest.json").is_file()
        assert man["key"]["data_hash"] and man["seed"] == p.seed and man["wall_time_s"] >= 0
        assert not (d / "checkpoints").exists()
        assert json.loads((d / "log_history.json").read_text())
    assert out["sft"]["steps"] == p.sft.args["max_steps"]
    assert {"base_eval_loss", "eval_loss", "train_loss"} <= set(out["sft"]["metrics"])
    rm = out["reward"]["metrics"]
    assert {"eval_accuracy", "eval_p_value", "eval_accuracy_by_source"} <= set(rm)
    assert 0 <= rm["eval_p_value"] <= 1 and set(rm["eval_accuracy_by_source"]) <= {"oasst", "winobias", "winogrande"}
    ppo = out["ppo"]["metrics"]
    assert ppo["updates"] >= 1
    assert ppo["probe_prompts"] >= 1 and math.isfinite(ppo["probe_reward_before"] + ppo["probe_reward_after"])


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
    assert (
        stages.finished(
            changed, "hd-0.5", "sft", stages.stage_key(changed, "hd-0.5", "sft", out["sft"]["key"]["data_hash"])
        )
        is None
    )


def test_reward_model_learns_separable_toy(tiny_built, tmp_path):
    """After training, the reward model ranks a held-out separable toy set above chance."""
    from datasets import Dataset
    from trl import RewardTrainer

    from hetfb_utils.common.configs import lora_config, stage_config

    p = tiny_built[0]
    tok = load_tokenizer(base_model_path(p))
    words = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "water", "paper"]
    rows = [
        {"prompt": f"Say something about {w}: ", "chosen": f"{w} is good good good", "rejected": f"{w} is bad bad bad"}
        for w in words * 3
    ]
    model = load_reward_model(p, None)
    args = stage_config(
        p,
        "reward",
        tmp_path / "rm",
        max_steps=40,
        learning_rate=3e-3,
        per_device_train_batch_size=8,
        save_strategy="no",
        max_length=64,
    )
    tr = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows[:24]),
        processing_class=tok,
        peft_config=lora_config(p, "reward", "SEQ_CLS"),
    )
    tr.train()
    tr.model.eval()
    held = [
        {"prompt": f"Say something about {w}: ", "chosen": f"{w} is good good good", "rejected": f"{w} is bad bad bad"}
        for w in ["sun", "door", "bread", "chair"]
    ]
    assert reward.pairwise_accuracy(tr.model, tok, held, 4, 64) > 0.5


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
    """An SFT interrupted after a checkpoint resumes from it and ends at the same step count."""
    p0 = tiny_built[0]
    p = load_params(
        "tiny",
        [
            f"output_root={p0.output_root}",
            f"cache_dir={p0.cache_path}",
            "sft.args.max_steps=6",
            "sft.args.save_steps=2",
        ],
    )
    interrupt_sft(p, "wino", at_step=4)
    ck = stages.last_checkpoint(stages.stage_dir(p, "wino", "sft"))
    assert ck and ck.endswith("checkpoint-4")
    man = sft.train_sft(p, "wino")
    assert man["steps"] == 6
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


def test_same_seed_same_metrics(tiny_built, tmp_path):
    """Two trainings with the same seed on CPU give the same metrics (to 1e-6)."""
    p0 = tiny_built[0]
    runs = []
    for k in range(2):
        p = load_params("tiny", [f"output_root={tmp_path / str(k)}", f"cache_dir={p0.cache_path}"])
        import shutil

        shutil.copytree(p0.run_dir / "data", p.run_dir / "data")
        runs.append(sft.train_sft(p, "hd-0.5")["metrics"])
    for key in ("train_loss", "eval_loss", "base_eval_loss"):
        assert runs[0][key] == pytest.approx(runs[1][key], abs=1e-6)


def test_changed_inputs_never_resume_a_stale_checkpoint(tiny_built):
    """Interrupted, then re-run with another learning rate: the old checkpoint is discarded."""
    p0 = tiny_built[0]
    base = [
        f"output_root={p0.output_root}",
        f"cache_dir={p0.cache_path}",
        "sft.args.max_steps=4",
        "sft.args.save_steps=2",
    ]
    p = load_params("tiny", base)
    interrupt_sft(p, "hd-1.0")
    assert stages.last_checkpoint(stages.stage_dir(p, "hd-1.0", "sft"))
    changed = load_params("tiny", base + ["sft.args.learning_rate=5e-4"])
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


def test_split_rows_keeps_winogrande_twins_together():
    """Twins swap the answer between the same options: one trained on and the other held out
    would reward memorisation with below-chance held-out accuracy."""
    from datasets import Dataset

    rows = []
    for k in range(20):
        for t in range(2):
            rows.append({"source": "winogrande", "option1": f"A{k}", "option2": f"B{k}", "x": 2 * k + t})
    rows += [{"source": "oasst", "option1": "", "option2": "", "x": 100 + k} for k in range(10)]
    ds = Dataset.from_list(rows)
    for seed in range(5):
        train, ev = stages.split_rows(ds, 0.3, seed=seed)
        assert len(train) + len(ev) == len(ds) and not set(train["x"]) & set(ev["x"])
        assert abs(len(ev) - 15) <= 1
        held = {(r["option1"], r["option2"]) for r in ev if r["source"] == "winogrande"}
        assert not held & {(r["option1"], r["option2"]) for r in train if r["source"] == "winogrande"}
    assert len(set(stages.split_groups(ds))) == 20 + 10


def test_last_token_features_are_what_the_reward_head_reads(trained):
    p, _ = trained
    tok = load_tokenizer(base_model_path(p))
    rm = load_reward_model(p, stages.stage_dir(p, "hd-0.5", "sft"), stages.stage_dir(p, "hd-0.5", "reward"))
    texts = ["short one", "a much longer text that needs padding in its batch", "mid length text"]
    feats = reward.last_token_features(rm, tok, texts, batch_size=2, max_length=64)
    scores = reward.reward_scores(rm, tok, texts, batch_size=2, max_length=64)
    head = rm.score.weight.detach().float().numpy()[0]
    assert feats.shape == (3, head.shape[0])
    assert abs(feats @ head - scores).max() < 1e-4


def test_feature_probe_and_cli(trained, capsys, tmp_path):
    from hetfb_utils.__main__ import main

    p, _ = trained
    res = probe.feature_probe(p, "hd-0.5", max_train_pairs=20)
    assert res["train_pairs"] <= 20 and res["eval_pairs"] >= 1
    assert 0 <= res["probe_eval_accuracy"] <= 1 and 0 <= res["probe_eval_p_value"] <= 1
    assert set(res["probe_eval_accuracy_by_source"]) <= {"oasst", "winobias", "winogrande"}
    assert (
        main(
            [
                "probe",
                "tiny",
                "--variant",
                "hd-0.5",
                "--max-train-pairs",
                "20",
                "-p",
                f"output_root={p.output_root}",
                "-p",
                f"cache_dir={p.cache_path}",
            ]
        )
        == 0
    )
    assert (p.run_dir / "tables" / "04_feature_probe.csv").is_file()
    assert "probe_eval_accuracy" in capsys.readouterr().out
    fresh = load_params("tiny", [f"output_root={tmp_path}", f"cache_dir={p.cache_path}"])
    with pytest.raises(stages.TrainingError, match="has not been trained"):
        probe.feature_probe(fresh, "hd-0.5")


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
