"""Choose RL settings on prompts the reported gain is not measured on.

The held-out prompts of the sources RL trains on are split by group into two halves (`heldout.rl_prompts`): the RL
stage reports its gain on the `judged` half; this tool trains the RL stage of one variant once per candidate setting
and judges each on the `tuning` half (`rl.judge_on=tuning`), so the setting a params file keeps was not picked by the
numbers it later reports. Each candidate is a group of `-p`-style overrides; a table of the held-out gain (sampled and
greedy, with intervals), the length-matched gain, KL, finish rate and wall time is printed and written as CSV.

    .venv/bin/python tools/tune_rl.py params/quickstart.yaml --variant hd-0.2 \\
        --candidate "rl.algorithm=ppo" --candidate "rl.algorithm=rloo rl.rloo.args.learning_rate=2e-3" \\
        [-p key=value ...] [--out outputs/tune_rl.csv]
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import pandas as pd

from hetfb_utils import training
from hetfb_utils.common import load_params


def tune(params_file: str, variant: str, candidates: list[str], common: list[str]) -> pd.DataFrame:
    """One RL stage per candidate (forced: trained again), judged on the tuning half of the held-out prompts."""
    rows = []
    for cand in candidates:
        p = load_params(params_file, [*common, *shlex.split(cand), "rl.judge_on=tuning"])
        training.train_reward(p, variant)  # the reward model: trained once, read afterwards
        t0 = time.time()
        man = training.train_policy(p, variant, p.rl.algorithm, force=True)
        table = training.rl_judgement_table(man["metrics"])
        for _, r in table[table["policy"] == "trained"].iterrows():
            rows.append({"candidate": cand, "seconds": round(time.time() - t0), **r.to_dict()})
        print(table.round(3).to_string(), flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("params")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--candidate", action="append", required=True, help="overrides of one candidate, space-separated")
    ap.add_argument("-p", "--param", action="append", default=[], help="overrides every candidate shares")
    ap.add_argument("--out", default="outputs/tune_rl.csv")
    a = ap.parse_args()
    df = tune(a.params, a.variant, a.candidate, a.param)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    print(df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
