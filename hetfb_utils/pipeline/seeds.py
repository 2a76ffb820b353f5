"""Seed groups: one params file trained once per training seed (`make seeds`), compared at recipe level, and
replicated on seeds that were not used to make the verdicts (`--replicate K`)."""

from __future__ import annotations

import time
from pathlib import Path

from ..common.errors import RunFailed
from ..common.params import load_params
from .runner import execute


def run_seeds(params_file: str, seeds: list[int], overrides: list[str] | None = None, log=print) -> list[str]:
    """The params once per training seed, as runs `<run_name>-s<seed>` that differ only in `training.seed`:
    the data, the selection and Base's evaluation are reused, each seed trains and evaluates its own models
    on the same evaluation items. Returns the run directories."""
    overrides = list(overrides or [])
    name = load_params(params_file, overrides).run_name
    if len(set(seeds)) != len(seeds):
        raise RunFailed(f"--seeds {seeds}: a seed is given twice")
    runs, minutes = [], []
    for i, s in enumerate(seeds):
        over = [*overrides, f"training.seed={s}", f"run_name={name}-s{s}"]
        log(f"== training seed {s} ({i + 1} of {len(seeds)}) ==")
        t0 = time.time()
        execute(params_file, over, log=log)
        minutes.append((time.time() - t0) / 60)
        left = len(seeds) - i - 1
        later = minutes[1:] or minutes  # the first seed also builds what the others reuse
        log(
            f"== seed {s}: {minutes[-1]:.1f} min"
            + (f"; the remaining {left} seed(s): about {left * sum(later) / len(later):.0f} min ==" if left else " ==")
        )
        runs.append(str(load_params(params_file, over).run_dir))
    return runs


def finished_seed_runs(params_file: str, overrides: list[str] | None = None) -> list[str]:
    """The finished runs `<run_name>-s<seed>` of `params_file` under its output root (what `make seeds` made),
    in seed order; one error with the command that makes them when there are fewer than two."""
    from ..common.errors import RunReadError

    p = load_params(params_file, overrides)
    found = sorted(
        (d for d in p.run_dir.parent.glob(f"{p.run_name}-s*") if (d / "manifest.json").is_file()),
        key=lambda d: int(d.name.rsplit("-s", 1)[1]) if d.name.rsplit("-s", 1)[1].isdigit() else 1 << 30,
    )
    if len(found) < 2:
        raise RunReadError(
            f"{p.run_dir.parent}: {len(found)} finished run(s) named {p.run_name}-s<seed>; a seed group needs two "
            f'or more: `make seeds PARAMS={params_file} SEEDS="42 43 44 45"`, or set `runs` to run directories'
        )
    return [str(d) for d in found]


def seeds_and_compare(
    params_file: str,
    seeds: list[int],
    overrides: list[str] | None = None,
    replicate: int = 0,
    out_dir: str | None = None,
    log=print,
) -> Path:
    """`run_seeds`, then `compare` of the group; with `replicate` = K, K more seeds (the next integers after the
    largest), their own comparison (`<out>-replication`), the pooled comparison of every seed (`<out>-pooled`: the
    headline) and `replication.{csv,md}` in both the group's and the pooled comparison (`analysis.replication`).
    Returns the group's comparison directory (the pooled one with `replicate`)."""
    from ..analysis.comparison import compare_and_save
    from ..analysis.replication import replication_table
    from ..analysis.runs import load_run, seed_groups
    from ..common.report import atomic_path, atomic_write_text, git_commit

    if replicate < 0:
        raise RunFailed(f"--replicate {replicate}: give a number of new seeds >= 0")
    runs = run_seeds(params_file, seeds, overrides, log=log)
    out, d = compare_and_save(runs, out_dir, log=log)
    if not replicate:
        return d
    new_seeds = list(range(max(seeds) + 1, max(seeds) + 1 + replicate))
    log(f"== replication: {replicate} new training seeds {new_seeds} ==")
    new_runs = run_seeds(params_file, new_seeds, overrides, log=log)
    compare_and_save(new_runs, f"{d}-replication", log=log)
    pooled, pd_dir = compare_and_save(runs + new_runs, f"{d}-pooled", log=log)
    (original,) = seed_groups([load_run(r) for r in runs])
    (fresh,) = seed_groups([load_run(r) for r in new_runs])
    table = replication_table(out["claims"], pooled["claims"], original, fresh)
    for where in (d, pd_dir):
        with atomic_path(where / "replication.csv") as tmp:
            table.to_csv(tmp, index=False)
        atomic_write_text(
            table.to_markdown(index=False, floatfmt=".4g")
            + f"\n\n_new seeds: {', '.join(Path(r).name for r in new_runs)} · git {git_commit()}_\n",
            where / "replication.md",
        )
    counts = table["status"].value_counts().to_dict()
    log("replication: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" ({pd_dir / 'replication.md'})")
    return pd_dir
