"""Command line: `python -m hetfb_utils {run,seeds,compare,results,train,probe,plan,bench,validate,params-doc}`."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(prog="python -m hetfb_utils", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="execute notebooks 01-05 with papermill")
    r.add_argument("params", nargs="?", default="params/quickstart.yaml")
    r.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. -p seed=1 -p sft.args.max_steps=10",
    )
    r.add_argument(
        "--only",
        action="append",
        metavar="STAGE",
        help="run only these stages: data, selection, sft, rl, eval (repeatable)",
    )
    r.add_argument("--force", action="store_true", help="re-run every stage and retrain")

    sd = sub.add_parser(
        "seeds",
        help="train a params file once per training seed (outputs/<run>-s<seed>/: the data, "
        "selection and Base's evaluation are reused), then compare them at recipe level",
    )
    sd.add_argument("params")
    sd.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="training seeds (default: the params file's training.group_seeds)",
    )
    sd.add_argument("-p", "--param", action="append", default=[])
    sd.add_argument("--out", help="output directory (default <output_root>/compare/<run>-seeds)")

    c = sub.add_parser(
        "compare",
        help="runs side by side: intervals, HD-f vs controls, paired differences "
        "across runs, mean ± sd across seeds -> outputs/compare/<names>/",
    )
    c.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_PARAMS")
    c.add_argument("--out", help="output directory (default outputs/compare/<run names>)")

    rs = sub.add_parser(
        "results",
        help="RESULTS.md from finished runs: Table 1 with intervals beside the paper's, "
        "the other tables, the controls and seeds conclusions, stamped with run, commit, params, machine",
    )
    rs.add_argument(
        "runs",
        nargs="*",
        metavar="RUN_DIR_OR_PARAMS",
        help="default: outputs/quickstart (else every finished run) and every outputs/compare/*",
    )
    rs.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="COMPARE_DIR",
        help="a comparison written by `compare` / `seeds` (its conclusions are quoted)",
    )
    rs.add_argument("--out", default="RESULTS.md", help="the file to write (default RESULTS.md)")
    rs.add_argument(
        "--readme",
        action="store_true",
        help="also rewrite the README's block of current verdicts (the claims of the last comparison given)",
    )

    t = sub.add_parser("train", help="one training stage (in-process; what `accelerate launch` runs)")
    t.add_argument("stage", choices=["sft", "reward", "ppo", "dpo", "rl"])
    t.add_argument("params")
    t.add_argument("--variant", required=True)
    t.add_argument("-p", "--param", action="append", default=[])
    t.add_argument("--force", action="store_true")

    pr = sub.add_parser(
        "probe",
        help="diagnostic: linear-probe accuracy of the reward task on the SFT "
        "model's features (needs the SFT stage) -> tables/04_feature_probe",
    )
    pr.add_argument("params")
    pr.add_argument("--variant", action="append", help="default: every variant of the params file")
    pr.add_argument("--max-train-pairs", type=int, default=256)
    pr.add_argument("-p", "--param", action="append", default=[])

    b = sub.add_parser("bench", help="benchmark -> outputs/bench/bench.json and bench.md")
    b.add_argument("--params", default="params/quickstart.yaml")
    b.add_argument(
        "--skip-reproduce",
        action="store_true",
        help="skip the timed quickstart stages (scorer, SFT throughput, selection only)",
    )
    b.add_argument(
        "--reproduce-run",
        default="bench-quickstart",
        metavar="NAME",
        help="run name of the timed cold reproduction (its output dir is deleted first); "
        "`--reproduce-run quickstart` makes it the quickstart run itself",
    )

    pl = sub.add_parser(
        "plan",
        help="what a params file costs, resolved offline: parameters, LoRA, "
        "memory per GPU, tokens and GPU-hours per stage (model built on the meta device)",
    )
    pl.add_argument("params")
    pl.add_argument(
        "--tflops",
        type=float,
        default=100.0,
        help="effective throughput per GPU for the GPU-hours (default 100, ~1/3 of an A100's bf16 peak)",
    )
    pl.add_argument("-p", "--param", action="append", default=[])

    v = sub.add_parser("validate", help="check a params file and print the resolved parameters")
    v.add_argument("params")
    v.add_argument("-p", "--param", action="append", default=[])

    d = sub.add_parser("params-doc", help="write the parameter reference generated from the schema (docs/params.md)")
    d.add_argument("--out", default=None, help="the file to write (default docs/params.md)")
    a = ap.parse_args(argv)

    from .common.errors import KitError
    from .common.params import load_params

    try:
        if a.cmd == "run":
            from .pipeline.runner import execute

            execute(a.params, a.param, a.only, a.force)
        elif a.cmd in ("seeds", "compare"):
            from .analysis.comparison import compare_and_save

            runs = a.runs if a.cmd == "compare" else []
            if a.cmd == "seeds":
                from .pipeline.runner import run_seeds

                seeds = a.seeds or load_params(a.params, a.param).training.group_seeds
                runs = run_seeds(a.params, seeds, a.param)
            compare_and_save(runs, a.out, log=print)
        elif a.cmd == "results":
            from .analysis.results import write_results

            print(f"written: {write_results(a.runs, a.out, a.compare, a.readme)}")
        elif a.cmd == "train":
            from .pipeline.runner import train_stage

            p = load_params(a.params, a.param)
            print(train_stage(p, a.stage, a.variant, a.force))
        elif a.cmd == "probe":
            import datasets

            from .training.probe import feature_probe_table

            datasets.disable_progress_bars()
            p = load_params(a.params, a.param)
            df = feature_probe_table(p, a.variant or p.train_variants, a.max_train_pairs)
            print(df.to_string(index=False))
        elif a.cmd == "bench":
            from .pipeline.bench import run_bench

            run_bench(a.params, skip_reproduce=a.skip_reproduce, reproduce_run=a.reproduce_run)
        elif a.cmd == "plan":
            from .pipeline.plan import plan_text

            print(plan_text(load_params(a.params, a.param), a.tflops))
        elif a.cmd == "validate":
            import yaml

            print(yaml.safe_dump(load_params(a.params, a.param).model_dump(mode="json"), sort_keys=False))
        elif a.cmd == "params-doc":
            from .common.params_doc import write_params_doc

            path, changed = write_params_doc(a.out)
            print(f"{path} {'updated' if changed else 'already up to date'}")
    except (KitError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: completed stages are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
