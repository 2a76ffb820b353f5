"""Which differences are real: every reported metric with its 95 % confidence interval over the
evaluation items, and the paired difference of each model from Base and of each `-R` from its `-S`.

The statistics are `hetfb_utils.common.stats` (scipy); this module knows the tables: which per-item
values (the `items` of each benchmark's result) make which column, and how the kit prints them.

* `interval_tables(results, params)`  -> {table: long frame}: model, metric, value, lo, hi, n,
  and vs Base: delta, delta_lo, delta_hi, p;
* `differences(results, params)`      -> every paired comparison (vs Base, R vs S) in one frame;
* `table1_with_intervals(...)`         -> the Markdown Table 1: `0.415 [0.380, 0.450]*`, `†` rows;
* `rl_stage_notes(params)`             -> each `-R` row: the sources its reward model learned, its RL gain.

Items are paired by their ids, so two models (or two runs) are compared on the items both scored.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from ..common.params import Params
from ..common.stats import fmt_ci, interval, paired, real_difference, seed_for
from ..evaluation.registry import item_tables

CONTROL = re.compile(r"^(RAND|Q|DIV)-([0-9.]+)-([SR])$")
R_MARK, DIFF_MARK = "†", "*"
MODEL_LEVEL = "model (one training seed: the interval covers evaluation items only)"
READING = (
    "Each value is followed by its 95 % confidence interval over the evaluation items (seeded bootstrap). "
    f"`{DIFF_MARK}` marks a model whose paired difference from Base (same items) has a 95 % interval "
    "that excludes 0 (and exceeds the scorer's float tolerance, 1e-5); a value without it is not "
    "distinguishable from Base on these items. These are conclusions about **these trained models** (one "
    "training seed each), not about the recipes that made them: another training seed can move a model "
    "by more than these intervals. For recipe-level intervals (training seeds x items), train the same "
    "params with several seeds: `make seeds`, then read `compare`'s recipe tables."
)


def item_frame(result: dict, key: str) -> pd.DataFrame | None:
    """A model's per-item values for one benchmark, indexed by item id (None when not evaluated)."""
    val = result.get(key)
    if not isinstance(val, dict) or not val.get("items"):
        return None
    items = dict(val["items"])
    return pd.DataFrame(items).set_index("id")


def _aligned(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    common = a.index.intersection(b.index)
    return a.loc[common, cols], b.loc[common, cols]


def compare_items(a: pd.DataFrame, b: pd.DataFrame, num: str, den: str | None, seed: int) -> dict:
    """Paired difference A - B on the items both scored."""
    cols = [num] + ([den] if den else [])
    x, y = _aligned(a, b, cols)
    out = paired(x[num], y[num], x[den] if den else None, y[den] if den else None, seed=seed)
    return {**out, "paired_items": len(x)}


def paired_rows(a: dict, b: dict, seed: int, model_a: str, model_b: str) -> list[dict]:
    """Model A minus model B on every metric of every table both were scored on, paired on the items
    both scored (no item in common: no row)."""
    rows = []
    for table, (key, cols) in item_tables().items():
        ia, ib = item_frame(a, key), item_frame(b, key)
        if ia is None or ib is None or not len(ia.index.intersection(ib.index)):
            continue
        for col, num, den in cols:
            if num in ia and num in ib:
                d = compare_items(ia, ib, num, den, seed_for(seed, table, col, model_a, model_b))
                rows.append(
                    {
                        "table": table,
                        "metric": col,
                        "model": model_a,
                        "reference": model_b,
                        **d,
                        "real": real_difference(d["delta"], d["delta_lo"], d["delta_hi"]),
                        "conclusion": MODEL_LEVEL,
                    }
                )
    return rows


def interval_tables(results: list[dict], params: Params, diffs: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Per table, every model's intervals and its paired difference from Base (taken from `diffs`,
    the frame `differences` returns, when given: the same seeded comparison, not computed twice)."""
    ok = [r for r in results if "error" not in r]
    base = next((r for r in ok if r["model"] == "Base"), None)
    known = (
        {}
        if diffs is None or not len(diffs)
        else {
            (d["table"], d["metric"], d["model"]): {
                k: d[k] for k in ("delta", "delta_lo", "delta_hi", "p", "paired_items")
            }
            for d in diffs[diffs["reference"] == "Base"].to_dict("records")
        }
    )
    out = {}
    for table, (key, cols) in item_tables().items():
        rows = []
        base_items = item_frame(base, key) if base else None
        for r in ok:
            items = item_frame(r, key)
            if items is None:
                continue
            for col, num, den in cols:
                if num not in items:
                    continue
                v, lo, hi = interval(
                    items[num], items[den] if den else None, seed=seed_for(params.eval_seed, table, col, r["model"])
                )
                row = {"model": r["model"], "metric": col, "value": v, "lo": lo, "hi": hi, "n": len(items)}
                if base_items is not None and r is not base and num in base_items:
                    row.update(
                        known.get((table, col, r["model"]))
                        or compare_items(
                            items, base_items, num, den, seed_for(params.eval_seed, table, col, r["model"], "Base")
                        )
                    )
                rows.append(row)
        if rows:
            df = pd.DataFrame(rows)
            for c in ("delta", "delta_lo", "delta_hi", "p"):
                if c not in df:
                    df[c] = np.nan
            df["differs_from_base"] = [
                real_difference(d, lo, hi) for d, lo, hi in zip(df["delta"], df["delta_lo"], df["delta_hi"])
            ]
            df["conclusion"] = MODEL_LEVEL
            out[table] = df
    return out


def differences(results: list[dict], params: Params) -> pd.DataFrame:
    """Every paired comparison the tables support: each model vs Base, each `-R` vs its `-S`."""
    ok = {r["model"]: r for r in results if "error" not in r}
    pairs = [(m, "Base") for m in ok if m != "Base" and "Base" in ok]
    pairs += [(m, m[:-1] + "S") for m in ok if m.endswith("R") and m[:-1] + "S" in ok]
    df = pd.DataFrame([row for a, b in pairs for row in paired_rows(ok[a], ok[b], params.eval_seed, a, b)])
    order = {t: i for i, t in enumerate(item_tables())}  # table by table, as the tables are printed
    return df.sort_values("table", key=lambda t: t.map(order), kind="stable").reset_index(drop=True) if len(df) else df


def rl_stage_notes(params: Params) -> dict[str, dict]:
    """Each variant's `-R` stages as Table 1 marks them: the sources its reward model learned (each with its held-out
    accuracy and interval) and the RL stage's held-out reward gain with its interval (None when not run)."""
    from ..training.stages import stage_dir

    out = {}
    for v in params.train_variants:
        m = stage_dir(params, v, "reward") / "manifest.json"
        if not m.is_file():
            continue
        met = json.loads(m.read_text()).get("metrics") or {}
        judged = met.get("judgement") or {}
        learned = {s: judged[s] for s in met.get("learned_sources") or [] if s in judged}
        rl = stage_dir(params, v, params.rl.algorithm) / "manifest.json"
        gain = None
        if rl.is_file():
            rm = json.loads(rl.read_text()).get("metrics") or {}
            if "heldout_reward_gain" in rm:
                gain = {k: rm[f"heldout_reward_gain{s}"] for k, s in (("value", ""), ("lo", "_lo"), ("hi", "_hi"))}
        out[v] = {"learned": learned, "gain": gain}
    return out


def r_mark(note: dict) -> str:
    """`†(oasst)`: the sources the row's reward model learned (`†(none)`: it learned no source)."""
    return f"{R_MARK}({', '.join(note['learned']) or 'none'})"


def r_model_variant(name: str, results: list[dict]) -> str | None:
    """The variant a model of the results was trained from (None for Base)."""
    return next((r.get("variant") for r in results if r["model"] == name), None)


def table1_with_intervals(ci: pd.DataFrame, results: list[dict], params: Params) -> tuple[pd.DataFrame, str]:
    """The Markdown Table 1 (cells `value [lo, hi]`, `*` = differs from Base) and its footnote."""
    from ..evaluation.tables import TABLE1_COLUMNS

    notes = rl_stage_notes(params) if params.rl.algorithm in ("ppo", "rloo") else {}
    rows = []
    for model, g in ci.groupby("model", sort=False):
        g = g.set_index("metric")
        name = model
        v = r_model_variant(model, results)
        if model.endswith("R") and v in notes:
            name = f"{model} {r_mark(notes[v])}"
        row = {"model": name}
        for c in TABLE1_COLUMNS:
            if c in g.index:
                x = g.loc[c]
                row[c] = fmt_ci(x["value"], x["lo"], x["hi"]) + (f" {DIFF_MARK}" if x["differs_from_base"] else "")
        rows.append(row)
    lines = [READING]
    if notes:
        per_row = []
        for v, n in notes.items():
            learned = "; ".join(f"{s} {fmt_ci(r['accuracy'], r['lo'], r['hi'])}" for s, r in n["learned"].items())
            gain = fmt_ci(n["gain"]["value"], n["gain"]["lo"], n["gain"]["hi"]) if n["gain"] else "not run"
            per_row.append(f"{v}: learned {learned or 'no source'}, RL held-out reward gain {gain}")
        lines.append(
            f"`{R_MARK}(…)` after an `-R` row names the sources its reward model learned (held-out accuracy above "
            "chance and above its shuffled-label heads); `{R_MARK}(none)`: it learned none, and its RL stage trained "
            "against a reward at chance. " + "; ".join(per_row) + "."
        )
    return pd.DataFrame(rows), "\n\n".join(lines)


def wide_with_intervals(ci: pd.DataFrame) -> pd.DataFrame:
    """Any interval table as model x metric cells `value [lo, hi]` (with `*`)."""
    cells = ci.assign(
        cell=[
            fmt_ci(v, lo, hi) + (f" {DIFF_MARK}" if d else "")
            for v, lo, hi, d in zip(ci["value"], ci["lo"], ci["hi"], ci["differs_from_base"])
        ]
    )
    order = list(dict.fromkeys(ci["metric"]))
    return (
        cells.pivot(index="model", columns="metric", values="cell")
        .loc[list(dict.fromkeys(ci["model"])), order]
        .reset_index()
    )


def save_interval_tables(results: list[dict], params: Params) -> dict:
    """Compute and write every interval: `tables/<table>_ci.{csv,md}` (long CSV: value, lo, hi, n,
    delta, delta_lo, delta_hi, p vs Base; Markdown: model x metric cells), Table 1's Markdown with
    its intervals, markers and footnote, and `tables/differences.{csv,md}` (vs Base, R vs S).
    Returns the frames and the seconds the bootstrap took."""
    import time

    from ..common.report import atomic_write_json, save_table
    from ..evaluation.tables import table1

    atomic_write_json(results, params.run_dir / "eval" / "results.json")  # what `compare` reads
    t0 = time.time()
    diffs = differences(results, params)
    ci = interval_tables(results, params, diffs)
    seconds = time.time() - t0
    for name, df in ci.items():
        save_table(
            df,
            f"{name}_ci",
            params,
            markdown=wide_with_intervals(df),
            footnote=READING,
            caption=f"{name}: 95 % confidence intervals over the evaluation items (one training seed)",
        )
    t1_md, note = (
        table1_with_intervals(ci["table1_winobias"], results, params) if "table1_winobias" in ci else (None, None)
    )
    save_table(
        table1(results),
        "table1_winobias",
        params,
        markdown=t1_md,
        footnote=note,
        caption=f"Table 1 (ours, {params.model.name_or_path}), with 95 % confidence intervals over the evaluation "
        "items (one training seed: conclusions about these models)",
    )
    if len(diffs):
        save_table(
            diffs,
            "differences",
            params,
            footnote="Paired differences on the same items: 95 % bootstrap "
            "CI and two-sided sign-flip permutation p (unadjusted for the number of comparisons).",
            caption="Model minus reference, every metric",
        )
    return {"ci": ci, "differences": diffs, "table1_markdown": t1_md, "footnote": note, "seconds": seconds}
