"""`RESULTS.md`, generated from finished runs (`python -m hetfb_utils results RUN_DIR... [--compare DIR]`,
`make results`): nothing in it is typed by hand.

Per run: Table 1 with its intervals beside the paper's LLaMA-7B numbers, the other benchmarks' tables, what
training achieved (SFT loss, reward-model accuracy with its Wilson interval), each stamped with the run, its
git commit, params hash, the three seeds and the machine (cores, the base model's forward FLOP rate measured
when it ran). Per comparison (`compare` / `seeds` output directories): its summary, the recipe-level Table 1,
the A/A calibration and the paper's claims scored, as the kit words them.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path

import pandas as pd

from ..evaluation.tables import PAPER_TABLE1, TABLE1_COLUMNS
from .runs import Run, code_line, load_run, relative
from .uncertainty import R_MARK, wide_with_intervals


def other_tables() -> dict[str, str]:
    """table -> title of every registered benchmark with a per-item table, Table 1 aside (`evaluation.registry`: a new
    benchmark reaches RESULTS.md with no edit here)."""
    from ..evaluation.registry import benchmarks

    return {b.table: b.title for b in benchmarks() if b.table and b.columns and b.table != "table1_winobias"}


def _md(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "_(empty)_"


def _stamp(run: Run) -> str:
    man = json.loads((run.dir / "manifest.json").read_text())
    m = man.get("machine") or {}
    seeds = run.params.seeds
    reused = any("reused_from" in json.loads(m.read_text()) for m in run.dir.glob("models/*/*/manifest.json"))
    machine = (
        f"{m.get('cores')} cores, {m.get('processor') or '?'}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + (
            f", forward {m['forward_gflops']} GFLOP/s (batch {m.get('batch')}x{m.get('seq')})"
            if m.get("forward_gflops")
            else ", forward FLOP rate not measured"
        )
    )
    return (
        f"_run `{run.name}` ({relative(run.dir)}) · {code_line(man)} · params {run.params.digest()} · model "
        f"`{run.params.model.name_or_path}` · seeds: data {seeds['data']}, training {seeds['training']}, "
        f"evaluation {seeds['evaluation']} · machine: {machine} · notebooks {man.get('wall_time_s', '?')} s"
        + (" (trained stages copied from the stage store: their own times are in their manifests)" if reused else "")
        + "_"
    )


def table1_beside_paper(run: Run) -> pd.DataFrame:
    """Table 1 of a run: each cell `value [lo, hi]` (with `*` / `†` as the run's table has them) and the paper's
    number beside it."""
    path = run.dir / "tables" / "table1_winobias_ci.csv"
    if not path.is_file():
        return pd.DataFrame()
    ci = pd.read_csv(path)
    wide = wide_with_intervals(ci)
    t1 = (
        (run.dir / "tables" / "table1_winobias.md").read_text()
        if (run.dir / "tables" / "table1_winobias.md").is_file()
        else ""
    )
    marks = dict(re.findall(rf"\| ([^|]+?) ({re.escape(R_MARK)}\([^)]*\))", t1))
    wide["model"] = [f"{m} {marks[m]}" if m in marks else m for m in wide["model"]]
    paper = PAPER_TABLE1.set_index("model")
    out = wide[["model"]].copy()
    for c in TABLE1_COLUMNS:
        if c in wide:
            out[c] = wide[c]
            out[f"{c} [paper]"] = [
                paper.loc[m.split()[0], c] if m.split()[0] in paper.index else None for m in wide["model"]
            ]
    return out


def training_lines(run: Run) -> list[str]:
    """One line per trained variant of what training achieved (SFT held-out loss, reward-model held-out accuracy with
    its interval), from the run's training summary."""
    path = run.dir / "tables" / "training_summary.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    out = []
    for _, r in df.iterrows():
        parts = []
        if pd.notna(r.get("sft.eval_loss")) and pd.notna(r.get("sft.base_eval_loss")):
            parts.append(
                f"SFT held-out loss {r['sft.base_eval_loss']:.3g} → {r['sft.eval_loss']:.3g} "
                f"({int(r.get('sft.eval_rows', 0))} rows)"
            )
        if isinstance(r.get("reward.learned_sources"), str):
            parts.append(f"reward model learned: {r['reward.learned_sources']}")
        for stage in ("ppo", "rloo"):
            if pd.notna(r.get(f"{stage}.heldout_reward_gain")):
                parts.append(
                    f"{stage.upper()} held-out reward gain {r[f'{stage}.heldout_reward_gain']:.3g} "
                    f"[{r[f'{stage}.heldout_reward_gain_lo']:.3g}, {r[f'{stage}.heldout_reward_gain_hi']:.3g}], "
                    f"KL {r.get(f'{stage}.heldout_kl', float('nan')):.3g}"
                )
        if parts:
            out.append(f"- `{r['variant']}`: " + "; ".join(parts))
    return out


def run_section(run: Run) -> str:
    """The RESULTS.md section of one run: its stamp, Table 1 beside the paper's, the other tables, what training
    achieved."""
    lines = [f"## Run `{run.name}`", "", _stamp(run), ""]
    t1 = table1_beside_paper(run)
    if len(t1):
        lines += [
            "### Table 1 (WinoBias), ours beside the paper's (LLaMA-7B)",
            "",
            "Intervals over the evaluation items of each trained model (**one training seed**: conclusions "
            "about these models, not their recipes). `*` the paired difference from Base is real on these "
            f"items; `{R_MARK}(…)` names the sources the row's reward model learned.",
            "",
            _md(t1),
            "",
        ]
    for table, title in other_tables().items():
        p = run.dir / "tables" / f"{table}_ci.csv"
        if p.is_file():
            lines += [f"### {title}", "", _md(wide_with_intervals(pd.read_csv(p))), ""]
    tl = training_lines(run)
    if tl:
        lines += ["### What training achieved", "", *tl, ""]
    return "\n".join(lines)


def comparison_section(d: Path) -> str:
    """The RESULTS.md section of one comparison directory: its summary, Table 1 by recipe, the claims, the
    replication, the A/A calibration and the variance split."""
    d = Path(d)
    if not (d / "summary.md").is_file():
        raise FileNotFoundError(f"{d} is not a comparison written by `compare` or `seeds` (no summary.md)")
    lines = [f"## Comparison `{d.name}`", "", (d / "summary.md").read_text().strip(), ""]
    for name, title in (
        ("table1_recipe", "Table 1 by recipe"),
        ("claims", "The paper's claims, scored"),
        ("replication", "Do the verdicts replicate on new training seeds?"),
        ("aa_summary", "A/A calibration: comparisons whose truth is 0, in every setting the kit reports"),
        ("variance", "Where the variance comes from (Table 1, vs Base)"),
    ):
        p = d / f"{name}.csv"
        if p.is_file() and p.stat().st_size > 1:
            df = pd.read_csv(p)
            if name == "claims":
                df = df[
                    [
                        c
                        for c in (
                            "id",
                            "claim",
                            "comparison",
                            "tests",
                            "metric",
                            "verdict",
                            "estimate",
                            "lo",
                            "hi",
                            "p",
                            "p_holm",
                            "conclusion",
                            "detectable_80",
                        )
                        if c in df
                    ]
                ]
            lines += [f"### {title}", "", _md(df), ""]
    return "\n".join(lines)


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def discover(output_root: Path) -> tuple[list[Path], list[Path]]:
    """What `results` reads when given nothing: the quickstart run (else every finished run) and every comparison
    (`<output_root>/compare/*` with a summary)."""
    runs = sorted(p.parent.parent for p in output_root.glob("*/eval/results.json"))
    quick = [r for r in runs if r.name == "quickstart"]
    compares = sorted(p.parent for p in (output_root / "compare").glob("*/summary.md"))
    return quick or runs, compares


def _replication_note(x) -> str:
    """One claim's replication line: the status, the original verdict and interval, the new seeds' interval and the
    original-minus-new contrast."""
    from ..common.stats import fmt_ci

    if x["status"] in ("not tested",):
        return "not tested"
    orig = f"{x['original_verdict']} on {x['original_seeds']}"
    if x["status"] == "nothing to replicate":
        return f"nothing to replicate ({orig})"
    new = fmt_ci(x["new_estimate"], x["new_lo"], x["new_hi"])
    diff = fmt_ci(x["difference_old_minus_new"], x["difference_lo"], x["difference_hi"])
    return f"{x['status']} ({orig}; {x['new_seeds']}: {new}; old − new {diff})"


def claims_block(compare_dir: Path) -> str:
    """The README's current verdicts: the claims of one comparison (with `seeds --replicate K`, the pooled comparison
    of every seed: the headline), each with its unadjusted and Holm-consistent intervals, its seeds, whether it
    replicated on the new seeds (`analysis.replication`), and the leave-one-seed-out diagnostic."""
    from ..common.stats import fmt_ci

    d = Path(compare_dir)
    df = pd.read_csv(d / "claims.csv")
    rep = pd.read_csv(d / "replication.csv").set_index("id") if (d / "replication.csv").is_file() else None
    rows = []
    for _, r in df.iterrows():
        tested = pd.notna(r.get("estimate"))
        status = "not replicated yet (`seeds --replicate K`)"
        if rep is not None and r["id"] in rep.index:
            status = _replication_note(rep.loc[r["id"]])
        rows.append(
            {
                "claim": f"{r['id']}: {r['claim']}",
                "comparison": f"{r['comparison']}, {r['metric']}"
                + (f" ({r['tests']})" if isinstance(r.get("tests"), str) and "not the paper" in r["tests"] else ""),
                "verdict": f"**{r['verdict']}**",
                "difference [95 % CI]": fmt_ci(r["estimate"], r["lo"], r["hi"]) if tested else "–",
                "Holm-consistent CI": f"[{r['adj_lo']:.3g}, {r['adj_hi']:.3g}]" if pd.notna(r.get("adj_lo")) else "–",
                "p (Holm)": f"{r['p_holm']:.2g}" if pd.notna(r.get("p_holm")) else "–",
                "evidence": r["conclusion"] + (f"; {r['rl_stage']}" if isinstance(r.get("rl_stage"), str) else ""),
                "replication": status,
                "leave one seed out": r.get("loso") if isinstance(r.get("loso"), str) else "–",
                "detectable at 80 %": f"{r['detectable_80']:.3g}" if pd.notna(r.get("detectable_80")) else "–",
            }
        )
    when = _dt.datetime.fromtimestamp((d / "claims.csv").stat().st_mtime, _dt.timezone.utc)
    return (
        f"From `{d.name}` ({when:%Y-%m-%d}). The verdict follows the Holm-adjusted p across the claims, and so "
        "does the Holm-consistent interval beside it (it excludes the null exactly when the verdict is not 'not "
        "distinguishable'); the 95 % CI is unadjusted. The paper's numbers are LLaMA-7B's, these are SmolLM2-135M's "
        "on a CPU budget.\n\n" + _md(pd.DataFrame(rows))
    )


def update_readme(compare_dir: Path, readme: Path | None = None) -> bool:
    """Rewrite the README's results block from a comparison's claims; True when it changed."""
    from ..common.params import REPO_ROOT
    from ..common.report import atomic_write_text

    readme = readme or REPO_ROOT / "README.md"
    text = readme.read_text()
    a, b = text.index(README_START) + len(README_START), text.index(README_END)
    new = text[:a] + "\n" + claims_block(compare_dir) + "\n" + text[b:]
    if new != text:
        atomic_write_text(new, readme)
    return new != text


def write_results(
    runs: list[str | Path], out: str | Path = "RESULTS.md", compare_dirs: list[str | Path] = (), readme: bool = False
) -> Path:
    """Write RESULTS.md from finished runs and comparisons (none given: `discover`); with `readme`, also the
    README's block of current verdicts from the comparison with the most training seeds. Returns RESULTS.md's
    path."""
    from ..common.params import REPO_ROOT
    from ..common.report import atomic_write_text

    if not runs and not compare_dirs:
        runs, compare_dirs = discover(REPO_ROOT / "outputs")
        if not runs and not compare_dirs:
            raise FileNotFoundError("no finished run under outputs/: run `make reproduce` (or give run directories)")
    from ..common.report import git_commit

    loaded = [load_run(r) for r in runs]
    head_commit = git_commit()
    tree = (
        "clean tree" if not head_commit.endswith("+dirty") else "**uncommitted changes: regenerate from a clean tree**"
    )
    head = [
        "# Results",
        "",
        f"Generated by `python -m hetfb_utils results` on "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} at git {head_commit} ({tree}) from "
        + ", ".join(f"`{relative(r.dir)}`" for r in loaded)
        + (" and " + ", ".join(f"`{relative(Path(c))}`" for c in compare_dirs) if compare_dirs else "")
        + ". Do not edit by hand: re-run the command. Each run's stamp names the commit and the code hash that "
        "produced it, and says when that is not the code at HEAD. Every number comes with its interval, and each "
        "conclusion says whether it is about one trained model (one training seed) or about a recipe (training "
        "seeds x items).",
        "",
    ]
    body = [run_section(r) for r in loaded] + [comparison_section(Path(c)) for c in compare_dirs]
    path = Path(out)
    atomic_write_text("\n".join(head + body) + "\n", path)
    with_claims = [Path(c) for c in compare_dirs if (Path(c) / "claims.csv").is_file()]
    if readme and with_claims:
        update_readme(max(with_claims, key=_seeds_in))  # the comparison with the most training seeds
    return path


def _seeds_in(compare_dir: Path) -> int:
    groups = Path(compare_dir) / "groups.csv"
    return int(pd.read_csv(groups)["k"].max()) if groups.is_file() and groups.stat().st_size > 1 else 0
