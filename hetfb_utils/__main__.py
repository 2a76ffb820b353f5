"""Command line: `python -m hetfb_utils {run,seeds,compare,results,train,audit,plan,bench,validate,params-doc}`.

One function per subcommand (`cmd_<name>`), each given the parsed arguments; the kit's errors (`KitError`) and a
missing file end as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .common.errors import KitError
from .common.params import load_params


def _params_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """The params file and its `-p key=value` overrides."""
    if default:
        p.add_argument("params", nargs="?", default=default)
    else:
        p.add_argument("params")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. -p seed=1 -p sft.args.max_steps=10",
    )


# --------------------------------------------------------------------------- the subcommands
def cmd_run(a) -> None:
    """Notebooks 01-05 of a params file, with papermill (resumable)."""
    from .pipeline.runner import execute

    execute(a.params, a.param, a.only, a.force)


def cmd_seeds(a) -> None:
    """The params once per training seed, compared at recipe level (and replicated on new seeds)."""
    from .pipeline.seeds import seeds_and_compare

    seeds = a.seeds or load_params(a.params, a.param).training.group_seeds
    seeds_and_compare(a.params, seeds, a.param, replicate=a.replicate, out_dir=a.out)


def cmd_compare(a) -> None:
    """Runs side by side."""
    from .analysis.comparison import compare_and_save

    compare_and_save(a.runs, a.out, log=print)


def cmd_results(a) -> None:
    """RESULTS.md (and the README's verdicts) from finished runs."""
    from .analysis.results import write_results

    print(f"written: {write_results(a.runs, a.out, a.compare, a.readme)}")


def cmd_train(a) -> None:
    """One training stage in this process (what `accelerate launch` runs)."""
    from .pipeline.launch import train_stage

    print(train_stage(load_params(a.params, a.param), a.stage, a.variant, a.force))


def cmd_audit(a) -> None:
    """Which feedback carries a learnable preference: the label signal audit of a params file's sources."""
    from .data import build_union
    from .selection.signal import label_audit

    p = load_params(a.params, a.param)
    cols = ["source", "label", "pairs", "gap_median", "length", "probe", "probe_lo", "probe_hi", "shuffled"]
    print(label_audit(p, build_union(p, progress=False).union)[cols].to_string(index=False))


def cmd_bench(a) -> None:
    """Speed figures side by side in one run."""
    from .pipeline.bench import run_bench

    run_bench(a.params, skip_reproduce=a.skip_reproduce, reproduce_run=a.reproduce_run, quick=a.quick)


def cmd_plan(a) -> None:
    """What a params file costs on GPUs, offline."""
    from .pipeline.plan import plan_text

    print(plan_text(load_params(a.params, a.param), a.tflops))


def cmd_validate(a) -> None:
    """The resolved parameters of a params file (one clear error when it is wrong)."""
    import yaml

    print(yaml.safe_dump(load_params(a.params, a.param).model_dump(mode="json"), sort_keys=False))


def cmd_params_doc(a) -> None:
    """docs/params.md regenerated from the schema."""
    from .common.params_doc import write_params_doc

    path, changed = write_params_doc(a.out)
    print(f"{path} {'updated' if changed else 'already up to date'}")


# --------------------------------------------------------------------------- the parser
def parser() -> argparse.ArgumentParser:
    """Every subcommand with its arguments; each parser's `func` is its `cmd_<name>`."""
    ap = argparse.ArgumentParser(prog="python -m hetfb_utils", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    _run_commands(sub)
    _report_commands(sub)
    _tool_commands(sub)
    return ap


def _run_commands(sub) -> None:
    """The commands that train and evaluate: run, seeds, train."""
    r = sub.add_parser("run", help="execute notebooks 01-05 with papermill")
    _params_args(r, default="params/quickstart.yaml")
    r.add_argument("--only", action="append", metavar="STAGE", help="only these stages: data, selection, sft, rl, eval")
    r.add_argument("--force", action="store_true", help="re-run every stage and retrain")
    r.set_defaults(func=cmd_run)

    sd = sub.add_parser(
        "seeds",
        help="train a params file once per training seed (outputs/<run>-s<seed>/: the data, selection and Base's "
        "evaluation are reused), then compare them at recipe level",
    )
    _params_args(sd)
    sd.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="default: the params' training.group_seeds")
    sd.add_argument(
        "--replicate",
        type=int,
        default=0,
        metavar="K",
        help="then K new seeds: does each verdict hold on seeds that did not make it? (replication.md)",
    )
    sd.add_argument("--out", help="output directory (default <output_root>/compare/<run>-<k>seeds)")
    sd.set_defaults(func=cmd_seeds)

    t = sub.add_parser("train", help="one training stage (in-process; what `accelerate launch` runs)")
    t.add_argument("stage", choices=["sft", "reward", "ppo", "rloo", "dpo", "rl"])
    _params_args(t)
    t.add_argument("--variant", required=True)
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=cmd_train)


def _report_commands(sub) -> None:
    """The commands that read finished runs: compare, results."""
    c = sub.add_parser("compare", help="runs side by side: model- and recipe-level intervals, A/A, claims")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_PARAMS")
    c.add_argument("--out", help="output directory (default outputs/compare/<run names>)")
    c.set_defaults(func=cmd_compare)

    rs = sub.add_parser("results", help="RESULTS.md from finished runs and comparisons, stamped with their code")
    rs.add_argument("runs", nargs="*", metavar="RUN_DIR_OR_PARAMS", help="default: outputs/quickstart and compares")
    rs.add_argument("--compare", action="append", default=[], metavar="COMPARE_DIR", help="a `compare` output")
    rs.add_argument("--out", default="RESULTS.md", help="the file to write (default RESULTS.md)")
    rs.add_argument("--readme", action="store_true", help="also rewrite the README's block of current verdicts")
    rs.set_defaults(func=cmd_results)


def _tool_commands(sub) -> None:
    """The tools: audit, bench, plan, validate, params-doc."""
    au = sub.add_parser("audit", help="which source and label carries a learnable preference (before training)")
    _params_args(au)
    au.set_defaults(func=cmd_audit)

    b = sub.add_parser("bench", help="benchmark -> outputs/bench/bench.json and bench.md")
    b.add_argument("--params", default="params/quickstart.yaml")
    b.add_argument("--skip-reproduce", action="store_true", help="skip the timed cold quickstart")
    b.add_argument("--quick", action="store_true", help="a check that the bench runs (few pairs and steps)")
    b.add_argument(
        "--reproduce-run",
        default="bench-quickstart",
        metavar="NAME",
        help="run name of the timed cold reproduction (its output dir is deleted first)",
    )
    b.set_defaults(func=cmd_bench)

    pl = sub.add_parser("plan", help="what a params file costs on GPUs, offline (model on the meta device)")
    _params_args(pl)
    pl.add_argument("--tflops", type=float, default=100.0, help="effective TFLOP/s per GPU (default 100)")
    pl.set_defaults(func=cmd_plan)

    v = sub.add_parser("validate", help="check a params file and print the resolved parameters")
    _params_args(v)
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("params-doc", help="write the parameter reference generated from the schema (docs/params.md)")
    d.add_argument("--out", default=None, help="the file to write (default docs/params.md)")
    d.set_defaults(func=cmd_params_doc)


def main(argv: list[str] | None = None) -> int:
    """Parse, run the subcommand; 2 on a kit error or a missing file, 130 on Ctrl-C."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .common.memory import return_freed_memory

    return_freed_memory()  # a training step's freed tensors go back to the system (common.memory)
    a = parser().parse_args(argv)
    try:
        a.func(a)
    except (KitError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: completed stages are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
