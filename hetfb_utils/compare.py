"""Runs side by side: `python -m hetfb_utils compare RUN_DIR_OR_PARAMS...` and notebook 06.

A run is a finished run directory (or the params file that names one); its evaluation results
with their per-item values are `<run>/eval/results.json` (written by notebook 05). Three views:

* **controls** (inside each run): every `RAND-f`, `Q-f`, `DIV-f` model minus its `HD-f` twin, paired
  on the same items: does the quality/diversity selection beat a subset of the same size?
* **across runs** (different mixes, labels, algorithms): the same model name in two runs, paired
  on the evaluation items both scored (none in common: nothing is claimed);
* **across seeds** (runs whose params differ only in `seed`): mean ± sd per model and metric, and
  which differences from Base keep their sign with an interval excluding 0 in every seed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .params import Params, load_params
from .stats import seed_summary
from .uncertainty import interval_tables, paired_rows

CONTROL = re.compile(r"^(RAND|Q|DIV)-([0-9.]+)-([SR])$")


@dataclass
class Run:
    name: str
    dir: Path
    params: Params
    results: list[dict]

    @property
    def seed(self) -> int:
        return self.params.seed


def load_run(where: str | Path) -> Run:
    """A run directory (with manifest.json) or a params file (its `outputs/<run_name>`)."""
    p = Path(where)
    if p.is_dir():
        man = p / "manifest.json"
        if not man.is_file():
            raise FileNotFoundError(f"{p} is not a run directory (no manifest.json): give a run directory "
                                    f"such as outputs/quickstart, or its params file")
        params = Params.model_validate(json.loads(man.read_text())["params"])
        run_dir = p
    else:
        params = load_params(where)
        run_dir = params.run_dir
    res = run_dir / "eval" / "results.json"
    if not res.is_file():
        raise FileNotFoundError(f"run '{params.run_name}' has no evaluation results ({res}): run its "
                                f"evaluation first (`python -m hetfb_utils run <params> --only eval`)")
    return Run(params.run_name, run_dir, params, json.loads(res.read_text()))


def _label(runs: list[Run]) -> list[str]:
    """Run names, made unique (the same run given twice compares as `name`, `name_2`)."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        out.append(r.name if seen[r.name] == 1 else f"{r.name}_{seen[r.name]}")
    return out


def per_run(runs: list[Run]) -> pd.DataFrame:
    """Every run's every model and metric with its interval and its difference from Base."""
    frames = []
    for label, r in zip(_label(runs), runs):
        for table, df in interval_tables(r.results, r.params).items():
            frames.append(df.assign(run=label, seed=r.seed, table=table))
    cols = ["run", "seed", "table", "model", "metric", "value", "lo", "hi", "n", "delta", "delta_lo", "delta_hi",
            "p", "differs_from_base"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def controls(runs: list[Run]) -> pd.DataFrame:
    """Each control model minus its `HD-f` twin of the same run (same items)."""
    rows = []
    for label, r in zip(_label(runs), runs):
        ok = {x["model"]: x for x in r.results if "error" not in x}
        for name, res in ok.items():
            m = CONTROL.match(name)
            twin = f"HD-{m.group(2)}-{m.group(3)}" if m else None
            if twin not in ok:
                continue
            rows += _pairs(ok[name], ok[twin], r.params, label, name, label, twin)
    return pd.DataFrame(rows)


def _pairs(a: dict, b: dict, params: Params, run_a: str, model_a: str, run_b: str, model_b: str) -> list[dict]:
    return [{"table": r.pop("table"), "metric": r.pop("metric"), "run": run_a, "model": r.pop("model"),
             "reference_run": run_b, **r} for r in paired_rows(a, b, params.seed, model_a, model_b)]


def across_runs(runs: list[Run]) -> pd.DataFrame:
    """The same model name in each later run minus the first run, paired on the items both scored."""
    labels = _label(runs)
    rows = []
    ref = {x["model"]: x for x in runs[0].results if "error" not in x}
    for label, r in zip(labels[1:], runs[1:]):
        for x in r.results:
            if "error" not in x and x["model"] in ref:
                rows += _pairs(x, ref[x["model"]], r.params, label, x["model"], labels[0], x["model"])
    return pd.DataFrame(rows)


def _without_seed(p: Params) -> str:
    d = p.model_dump(mode="json")
    for k in ("seed", "run_name", "output_root", "cache_dir"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True)


def across_seeds(table: pd.DataFrame, runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs whose params differ only in the seed: mean ± sd per model and metric, and per model and
    metric whether its difference from Base excludes 0 with the same sign in every seed."""
    groups: dict[str, dict[int, str]] = {}
    for label, r in zip(_label(runs), runs):
        groups.setdefault(_without_seed(r.params), {}).setdefault(r.seed, label)   # one run per seed
    summary, holds = [], []
    for i, labels in enumerate(list(g.values()) for g in groups.values() if len(g) > 1):
        sub = table[table["run"].isin(labels)]
        for (t, model, metric), g in sub.groupby(["table", "model", "metric"], sort=False):
            summary.append({"group": i, "runs": ", ".join(labels), "table": t, "model": model, "metric": metric,
                            **seed_summary(g["value"])})
            if model != "Base" and g["delta"].notna().all():
                signs = set((g["delta"] > 0).tolist())
                holds.append({"group": i, "table": t, "model": model, "metric": metric, "seeds": len(g),
                              "delta_mean": g["delta"].mean(),
                              "differs_in_every_seed": bool(g["differs_from_base"].all() and len(signs) == 1),
                              "differs_in_some_seeds": int(g["differs_from_base"].sum())})
    return pd.DataFrame(summary), pd.DataFrame(holds)


def compare(where: list[str | Path]) -> dict[str, pd.DataFrame]:
    runs = [load_run(w) for w in where]
    table = per_run(runs)
    seeds, holds = across_seeds(table, runs)
    return {"runs": table, "controls": controls(runs), "across_runs": across_runs(runs) if len(runs) > 1
            else pd.DataFrame(), "seeds": seeds, "seed_conclusions": holds}


def fig_deltas(diffs: pd.DataFrame, title: str):
    """Forest plot: each paired difference with its 95 % interval, one panel per metric."""
    from .report import _plt
    plt, _ = _plt()
    metrics = list(dict.fromkeys(diffs["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 0.35 * diffs["model"].nunique() + 1.8),
                             squeeze=False, sharey=True)
    for ax, m in zip(axes[0], metrics):
        d = diffs[diffs["metric"] == m].reset_index(drop=True)
        y = range(len(d))
        ax.errorbar(d["delta"], y, xerr=[d["delta"] - d["delta_lo"], d["delta_hi"] - d["delta"]], fmt="o", ms=4,
                    capsize=3, color="C0")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(list(y), [f"{a} − {b}" for a, b in zip(d["model"], d["reference"])], fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.suptitle(title + " (95 % CI; the line is no difference)", fontsize=10)
    fig.tight_layout()
    return fig


def summary_markdown(out: dict[str, pd.DataFrame]) -> str:
    """The conclusions, worded by their intervals."""
    lines = []
    c = out["controls"]
    if len(c):
        t1 = c[c["table"] == "table1_winobias"]
        real = t1[t1["interval_excludes_0"]]
        lines.append(f"**Controls** (Table-1 metrics, control minus its HD twin): {len(real)} of {len(t1)} paired "
                     "differences have a 95 % interval that excludes 0" + (":" if len(real) else "; no difference "
                                                                            "between the selection and its control "
                                                                            "is established at this evaluation size."))
        for _, r in real.iterrows():
            lines.append(f"- {r['model']} − {r['reference']}, {r['metric']}: {r['delta']:+.3g} "
                         f"[{r['delta_lo']:+.3g}, {r['delta_hi']:+.3g}], p = {r['p']:.3g}")
    s = out["seed_conclusions"]
    if len(s):
        kept = s[s["differs_in_every_seed"]]
        lines.append(f"**Seeds**: {len(kept)} of {len(s)} differences from Base exclude 0 with the same sign in "
                     "every seed.")
    return "\n".join(lines) or "_nothing to compare_"


def save_comparison(out: dict[str, pd.DataFrame], where: list[str | Path], out_dir: str | Path) -> Path:
    """`<out_dir>/{runs,controls,across_runs,seeds,seed_conclusions}.{csv,md}`, the forest plots and
    `summary.md` (which runs, from which directories)."""
    from .report import atomic_path, atomic_write_text, git_commit
    out_dir = Path(out_dir)
    stamp = f"\n_runs: {', '.join(str(w) for w in where)} · git {git_commit()}_\n"
    for name, df in out.items():
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
        atomic_write_text((df.to_markdown(index=False, floatfmt=".4g") if len(df) else "_(empty)_") + stamp,
                          out_dir / f"{name}.md")
    for name in ("controls", "across_runs"):
        d = out[name]
        if len(d):
            fig = fig_deltas(d[d["table"] == "table1_winobias"], f"{name}: Table-1 metrics")
            with atomic_path(out_dir / f"{name}_table1.png") as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    atomic_write_text(summary_markdown(out) + "\n" + stamp, out_dir / "summary.md")
    return out_dir
