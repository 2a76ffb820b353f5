"""What a run's training produced, for the notebooks and the tables: each stage's final metrics (with the
reward model's Wilson interval), the Trainer's log history, training curves."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ..common.params import Params
from ..common.report import pyplot
from ..common.stats import holm
from .stages import stage_dir


def log_frame(params: Params, variant: str, stage: str) -> pd.DataFrame:
    """A stage's log history as a frame (with its variant), empty when the stage has not run."""
    p = stage_dir(params, variant, stage) / "log_history.json"
    if not p.is_file():
        return pd.DataFrame()
    df = pd.DataFrame(json.loads(p.read_text()))
    df.insert(0, "variant", variant)
    return df


def training_summary(params: Params) -> pd.DataFrame:
    """Final metrics of every trained stage of the run, one row per variant (the reward model's per-source judgement
    as `reward.<source>.<field>`)."""
    rows = []
    for v in params.train_variants:
        row: dict[str, Any] = {"variant": v}
        for stage in ("sft", "reward", "ppo", "rloo", "dpo"):
            m = stage_dir(params, v, stage) / "manifest.json"
            if not m.is_file():
                continue
            man = json.loads(m.read_text())
            for k, val in (man.get("metrics") or {}).items():
                if k.endswith("_per_prompt"):  # per-prompt values: for the recipe-level reading, not a table cell
                    continue
                if k == "judgement" and isinstance(val, dict):
                    row.update({f"{stage}.{src}.{f}": x for src, r in val.items() for f, x in r.items()})
                elif isinstance(val, dict):
                    row.update({f"{stage}.{k}.{sub}": x for sub, x in val.items()})
                elif isinstance(val, list):
                    row[f"{stage}.{k}"] = ", ".join(map(str, val)) or "none"
                else:
                    row[f"{stage}.{k}"] = val
            row[f"{stage}.seconds"] = man.get("wall_time_s")
            row[f"{stage}.steps"] = man.get("steps")
        rows.append(row)
    df = pd.DataFrame(rows)
    if "sft.eval_loss" in df and "sft.base_eval_loss" in df:
        df["sft.learned (eval loss < base)"] = df["sft.eval_loss"] < df["sft.base_eval_loss"]
    # a verdict per variant is one of len(df) tests: each is Holm-adjusted across the run's variants
    for stage in ("ppo", "rloo"):
        if f"{stage}.heldout_reward_gain_p" in df:
            p = holm(df[f"{stage}.heldout_reward_gain_p"].fillna(1.0))
            raised = (df[f"{stage}.heldout_reward_gain"] > 0) & (p < 0.05)
            df[f"{stage}.raised_heldout_reward (Holm p < 0.05 across variants)"] = raised
    return df


def fig_curves(log: pd.DataFrame, metrics: list[str], title: str, x: str = "step"):
    """Training curves (one line per variant) for the given log keys."""
    plt, sns = pyplot()
    metrics = [m for m in metrics if m in log.columns]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        d = log[log[m].notna()]
        sns.lineplot(d, x=x, y=m, hue="variant", marker="o", ax=ax)
        ax.set_title(m)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reward_judgement_table(metrics: dict) -> pd.DataFrame:
    """A reward stage's held-out judgement as a table: per source (and all), the reward model's accuracy, the
    longer-reply baseline's and the shuffled-label heads', each with its 95 % interval, pairs and groups
    (`reward_judge.judgement_frame`)."""
    from .reward_judge import judgement_frame

    return judgement_frame(metrics.get("judgement") or {})


RL_POLICIES = (
    ("heldout", "trained"),
    ("control_shuffled", "control: shuffled-label reward"),
    ("control_length", "control: length reward"),
)


def rl_judgement_table(metrics: dict) -> pd.DataFrame:
    """An RL stage's held-out judgement as a table, one row per policy (trained; each control run) and answer kind
    (sampled at the RL temperature: the expected reward RL optimises; greedy: what the evaluation reads): the reward
    before and after on the held-out prompts, the paired gain with its 95 % interval, the length-matched gain
    (sampled), the answers' length and finish rate, and the KL from the SFT model (estimated on the sampled answers)."""
    rows = []
    for who, name in RL_POLICIES:
        if f"{who}_reward_gain" not in metrics:
            continue
        m = {k[len(who) + 1 :]: x for k, x in metrics.items() if k.startswith(who + "_")}
        for kind, key, length in (("sampled", "reward", "length"), ("greedy", "greedy", "greedy_length")):
            if f"{key}_gain" not in m:
                continue
            sampled = kind == "sampled"
            rows.append(
                {
                    "policy": name,
                    "answers": kind,
                    "prompts": m["prompts"],
                    "reward before": m[f"{key}_before"],
                    "reward after": m[f"{key}_after"],
                    "gain": m[f"{key}_gain"],
                    "gain lo": m[f"{key}_gain_lo"],
                    "gain hi": m[f"{key}_gain_hi"],
                    "length-matched gain": m.get("matched_gain") if sampled else None,
                    "matched lo": m.get("matched_gain_lo") if sampled else None,
                    "matched hi": m.get("matched_gain_hi") if sampled else None,
                    "length before": m.get(f"{length}_before"),
                    "length after": m.get(f"{length}_after"),
                    "finished before": m.get("finished_before") if sampled else None,
                    "finished after": m.get("finished_after") if sampled else None,
                    "KL": m["kl"] if sampled else None,
                    "KL lo": m["kl_lo"] if sampled else None,
                    "KL hi": m["kl_hi"] if sampled else None,
                }
            )
    return pd.DataFrame(rows)
