"""`make bench`: every figure measured side by side in one run -> outputs/bench/bench.{json,md}.

1. scorer: the kit's batched scorer vs the authors' approach (one forward pass per continuation
   token, batch size 1) on the same model and the same 100 WinoBias pairs; max |Δ log p|;
2. training steps side by side: SFT and the reward model in fp32 and bf16 (the bf16/fp32 ratios), SFT with
   activation checkpointing, the forward pass in fp32 and under bf16 autocast; `training.precision: auto`'s choice;
3. stages 1-2 (union + selection): quickstart cold/warm, and all mirror rows cold/warm;
4. the quickstart reproduction (all notebooks): wall time and peak memory per stage.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import psutil

from ..common.params import REPO_ROOT, load_params


class PeakRSS:
    """Peak resident memory of this process and its children (the notebook kernels)."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def reset(self) -> int:
        """The peak since the last reset (and start again)."""
        p, self.peak = self.peak, 0
        return p

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()


def bench_scorer(params, n_pairs: int = 100) -> dict:
    """The kit's batched scorer against the per-token reference on the same WinoBias continuations: seconds, speed-
    up, max difference."""
    import numpy as np

    from .. import data as D
    from ..evaluation.benchmarks.prompts import winobias_prompt
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer
    from ..models.scoring import reference_logprob, score_continuations

    model, tok = load_causal_lm(params), load_tokenizer(base_model_path(params))
    pairs = D.load_winobias_pairs("test", D.data_dir(params), "wb", D.Drops())[:n_pairs]
    jobs = []
    for p in pairs:
        for s in (p["pro"], p["anti"]):
            prompt = winobias_prompt(s.text, s.pronoun, tok, params)
            jobs += [(prompt, " " + s.referent)] + [(prompt, " " + w) for w in s.cluster_words]
    score_continuations(model, tok, jobs[:8], params.evaluation.batch_size)  # warm-up
    runs = []  # the kit's scorer takes seconds, so one run is at the mercy of machine noise: median of 3
    for _ in range(3):
        t0 = time.perf_counter()
        fast = score_continuations(model, tok, jobs, params.evaluation.batch_size)
        runs.append(time.perf_counter() - t0)
    t_fast = float(np.median(runs))
    t0 = time.perf_counter()
    slow = np.array([reference_logprob(model, tok, p, c) for p, c in jobs])
    t_slow = time.perf_counter() - t0
    return {
        "pairs": len(pairs),
        "continuations": len(jobs),
        "batch_size": params.evaluation.batch_size,
        "kit_seconds": round(t_fast, 3),
        "kit_seconds_runs": [round(x, 3) for x in runs],
        "reference_seconds": round(t_slow, 3),
        "speedup": round(t_slow / t_fast, 1),
        "max_abs_diff_logprob": float(np.max(np.abs(fast - slow))),
    }


def _step_seconds(trainer) -> float:
    """Mean seconds per optimizer step of `trainer.train()`, the first (warm-up) step left out."""
    from transformers import TrainerCallback

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(Clock())
    trainer.train()
    return sum(times[1:]) / max(1, len(times) - 1)


def bench_training_steps(params, steps: int = 5, batch: int = 4, seq: int = 128) -> dict:
    """Seconds per LoRA training step at one batch shape, side by side in one run: SFT in fp32, SFT in bf16
    (mixed precision: TRL's `bf16=True`, autocast), SFT with activation checkpointing (TRL's default, which the kit
    turns off on a CPU), the reward model (`RewardTrainer`) in fp32 and in bf16; and the forward pass in fp32 and
    under bf16 autocast. The ratios are what to quote (the machine's speed drifts between runs)."""
    # long: five timed trainers side by side in one run (the ratios need one sitting); each is three lines of setup
    import torch
    from datasets import Dataset
    from trl import RewardTrainer, SFTTrainer

    from ..common.configs import lora_config, stage_config
    from ..common.precision import resolve
    from ..models.loading import base_model_path, load_causal_lm, load_reward_model, load_tokenizer
    from ..models.speed import forward_flop_rate

    path = base_model_path(params)
    tok = load_tokenizer(path)
    text = " ".join(["the developer argued with the designer because she did not like the design"] * 40)
    body = tok.decode(tok(text, add_special_tokens=False).input_ids[: seq - 2])
    half = tok.decode(tok(text, add_special_tokens=False).input_ids[: seq // 2 - 2])
    other = tok.decode(tok(text.replace("she", "he"), add_special_tokens=False).input_ids[: seq // 2 - 2])
    sft_rows = Dataset.from_list([{"prompt": "", "completion": body}] * (batch * (steps + 2)))
    rm_rows = Dataset.from_list([{"chosen": half, "rejected": other}] * (batch * (steps + 2)))
    out: dict = {"batch": batch, "seq": seq, "steps": steps}
    common = dict(max_steps=steps + 1, per_device_train_batch_size=batch, save_strategy="no", disable_tqdm=True)
    with tempfile.TemporaryDirectory() as d:
        for label, extra in (
            ("sft_fp32", {"bf16": False}),
            ("sft_bf16", {"bf16": True}),
            ("sft_fp32_checkpointing", {"bf16": False, "activation_checkpointing": True}),
        ):
            args = stage_config(
                params, "sft", Path(d) / label, max_length=seq, completion_only_loss=False, **common, **extra
            )
            tr = SFTTrainer(
                model=load_causal_lm(params, path=path),
                args=args,
                train_dataset=sft_rows,
                processing_class=tok,
                peft_config=lora_config(params, "sft", "CAUSAL_LM"),
            )
            out[label] = round(_step_seconds(tr), 3)
        for label, bf16 in (("reward_fp32", False), ("reward_bf16", True)):
            args = stage_config(params, "reward", Path(d) / label, max_length=seq, bf16=bf16, **common)
            tr = RewardTrainer(
                model=load_reward_model(params, None),
                args=args,
                train_dataset=rm_rows,
                processing_class=tok,
                peft_config=lora_config(params, "reward", "SEQ_CLS"),
            )
            out[label] = round(_step_seconds(tr), 3)
    fp32 = forward_flop_rate(params, batch, seq)
    with torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16):
        bf16 = forward_flop_rate(params, batch, seq)
    out.update(
        {
            "forward_gflops_fp32": fp32["forward_gflops"],
            "forward_gflops_bf16": bf16["forward_gflops"],
            "forward_bf16_speedup": round(bf16["forward_gflops"] / fp32["forward_gflops"], 2),
            "sft_bf16_speedup": round(out["sft_fp32"] / out["sft_bf16"], 2),
            "reward_bf16_speedup": round(out["reward_fp32"] / out["reward_bf16"], 2),
            "sft_checkpointing_cost": round(out["sft_fp32_checkpointing"] / out["sft_fp32"], 2),
            "auto": resolve("auto")[0],
            "auto_why": resolve("auto")[1],
        }
    )
    n = fp32["params_matmul"]
    out["sft_fp32_gflops_4N"] = round(4 * n * batch * seq / out["sft_fp32"] / 1e9, 1)
    out["sft_vs_forward_flop_rate"] = round(out["sft_fp32_gflops_4N"] / fp32["forward_gflops"], 3)
    return out


def bench_stages12(params_file: str, overrides: list[str]) -> dict:
    """Stages 1-2 (union, embeddings, selection) cold (empty cache) and warm, in seconds."""
    from .. import data, selection

    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold", "warm"):
            p = load_params(params_file, overrides + [f"cache_dir={cache}"])
            t0 = time.perf_counter()
            u = data.build_union(p, progress=False)
            emb = selection.embed_prompts(u.union, p, progress=False)
            selection.select(u.union, emb, p)
            out[label] = round(time.perf_counter() - t0, 2)
        out["prompts"] = len(u.union)
    return out


def run_bench(
    params_file: str = "params/quickstart.yaml",
    skip_reproduce: bool = False,
    reproduce_run: str = "bench-quickstart",
    quick: bool = False,
) -> dict:
    """Every figure side by side in one run -> outputs/bench/bench.{json,md}. `quick`: 10 scorer pairs, 2 training
    steps, the quickstart's stages 1-2 only (a check that the bench runs, not figures to quote)."""
    from ..common.progress import quiet_library_bars
    from ..common.report import atomic_write_json, atomic_write_text, package_versions

    quiet_library_bars()  # the bench prints its own steps
    out_dir = REPO_ROOT / "outputs" / "bench"
    params = load_params(params_file)
    res: dict = {
        "params_file": params_file,
        "model": params.model.name_or_path,
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
    print("1/4 scorer vs per-token reference ...", flush=True)
    res["scorer"] = bench_scorer(params, n_pairs=10 if quick else 100)
    print(f"    {res['scorer']}", flush=True)
    print(
        "2/4 training steps: fp32 vs bf16 (SFT, reward model), activation checkpointing, forward pass ...", flush=True
    )
    res["precision"] = bench_training_steps(params, steps=2 if quick else 5)
    print(f"    {res['precision']}", flush=True)
    print("3/4 stages 1-2 (quickstart, all mirror rows), cold and warm ...", flush=True)
    res["stages12_quickstart"] = bench_stages12(params_file, [])
    if not quick:
        full = ["data.sources.winogrande.split=train_l", "data.sources.winobias.max_rows=null"]
        res["stages12_all_mirror_rows"] = bench_stages12(params_file, full)
    print(f"    {res['stages12_quickstart']} / {res.get('stages12_all_mirror_rows')}", flush=True)
    if not skip_reproduce:
        print(f"4/4 quickstart reproduction (cold: run '{reproduce_run}' deleted first) ...", flush=True)
        res["reproduce"] = bench_reproduce(params_file, reproduce_run)
    atomic_write_json(res, out_dir / "bench.json")
    atomic_write_text(bench_markdown(res), out_dir / "bench.md")
    print(f"wrote {out_dir / 'bench.json'} and bench.md")
    return res


def bench_reproduce(params_file: str, reproduce_run: str) -> dict:
    """The params' whole chain, cold (an empty cache: the base model's conversion and the embeddings count too),
    timed per notebook with its peak memory, then re-run with nothing changed."""
    from .runner import execute

    ov = [f"run_name={reproduce_run}"]
    shutil.rmtree(load_params(params_file, ov).run_dir, ignore_errors=True)
    stages: dict = {}
    current = [None, time.perf_counter()]
    with tempfile.TemporaryDirectory() as cache, PeakRSS() as mon, mock.patch.dict(os.environ, {"HETFB_CACHE": cache}):

        def log(line: str):
            """Print the runner's line; time each notebook from its `running` line to its `done` line."""
            print(line, flush=True)
            if ": running" in line:
                mon.reset()
                current[:] = [line.split("]", 1)[1].split(":")[0].strip(), time.perf_counter()]
            elif ": done" in line and current[0]:
                stages[current[0]] = {
                    "seconds": round(time.perf_counter() - current[1], 1),
                    "peak_rss_gib": round(mon.reset() / 2**30, 2),
                }

        t0 = time.perf_counter()
        execute(params_file, ov, log=log)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        execute(params_file, ov, log=lambda s: None)
        warm = time.perf_counter() - t1
    return {
        "run": reproduce_run,
        "stages": stages,
        "total_seconds": round(total, 1),
        "warm_rerun_seconds": round(warm, 1),
    }


def bench_markdown(r: dict) -> str:
    """bench.json as the Markdown table bench.md."""
    s, t = r["scorer"], r["precision"]
    lines = [
        f"# hetfb benchmark ({r['model']}, {r['cpu_count']} CPUs, torch {r['packages'].get('torch')})",
        "",
        "| what | figure |",
        "|---|---|",
        f"| scorer, {s['pairs']} WinoBias pairs ({s['continuations']} continuations) | kit {s['kit_seconds']} s vs "
        f"per-token reference {s['reference_seconds']} s: **{s['speedup']}x**, max abs diff log p "
        f"{s['max_abs_diff_logprob']:.2e} |",
        f"| forward pass (batch {t['batch']}x{t['seq']}) | fp32 {t['forward_gflops_fp32']} GFLOP/s, bf16 autocast "
        f"{t['forward_gflops_bf16']} GFLOP/s: **{t['forward_bf16_speedup']}x** |",
        f"| LoRA SFT step | fp32 {t['sft_fp32']} s, bf16 {t['sft_bf16']} s: **{t['sft_bf16_speedup']}x**; fp32 = "
        f"{t['sft_fp32_gflops_4N']} GFLOP/s (4N/token), "
        f"{100 * t['sft_vs_forward_flop_rate']:.0f}% of the forward rate |",
        f"| reward model step (RewardTrainer + LoRA) | fp32 {t['reward_fp32']} s, bf16 {t['reward_bf16']} s: "
        f"**{t['reward_bf16_speedup']}x** |",
        f"| activation checkpointing (TRL's default; off on CPU) | SFT step {t['sft_fp32_checkpointing']} s: "
        f"**{t['sft_checkpointing_cost']}x** the step without it |",
        f"| `training.precision: auto` here | **{t['auto']}** ({t['auto_why']}) |",
    ]
    for k in [k for k in ("stages12_quickstart", "stages12_all_mirror_rows") if k in r]:
        v = r[k]
        lines.append(
            f"| stages 1-2, {k.split('_', 1)[1].replace('_', ' ')} ({v['prompts']} prompts) | "
            f"cold {v['cold']} s, warm {v['warm']} s |"
        )
    if "reproduce" in r:
        rp = r["reproduce"]
        run = rp.get("run", "bench-quickstart")
        lines.append(f"| quickstart reproduction, cold (run `{run}`) | {rp['total_seconds'] / 60:.1f} min |")
        lines.append(f"| quickstart re-run, nothing changed | {rp['warm_rerun_seconds']} s |")
        lines += ["", "| stage | seconds | peak RSS (GiB) |", "|---|---|---|"]
        lines += [f"| {k} | {v['seconds']} | {v['peak_rss_gib']} |" for k, v in rp["stages"].items()]
    return "\n".join(lines) + "\n"
