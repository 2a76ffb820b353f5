"""Coverage of the recipe-level intervals on simulated studies with a known truth (`analysis.calibration`): the
table in `analysis/multiboot.py`'s docstring and docs/measurements.md, and the coverage when one seed in ten does not
behave (shifted by `--outlier-shift`: the leave-one-seed-out diagnostic of the claims names such a seed).

    .venv/bin/python tools/coverage.py [--trials 2000] [--methods gpq,satterthwaite,percentile] [--out FILE]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from hetfb_utils.analysis.calibration import SEED_SD, coverage, coverage_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--methods", default="gpq,satterthwaite,percentile")
    ap.add_argument("--out", default="outputs/coverage.md")
    ap.add_argument("--outlier-shift", type=float, default=0.3, help="the shift of a seed that does not behave")
    a = ap.parse_args()
    t0 = time.time()
    df = coverage_table(methods=tuple(a.methods.split(",")), trials=a.trials, n=a.items)
    df.to_csv(a.out.replace(".md", ".csv"), index=False)
    regimes = list(SEED_SD)
    wide = df.pivot_table(index=["setting", "seeds"], columns=["method", "regime"], values="coverage", sort=False)
    wide = wide[[(m, r) for m in a.methods.split(",") for r in regimes]]
    wide.columns = [f"{m}: {r}" for m, r in wide.columns]
    text = wide.map(lambda v: f"{v:.3f}").reset_index().to_markdown(index=False)
    worst = df.groupby("method")["coverage"].min().to_dict()
    note = (
        f"\n\n{a.trials} simulated studies per cell, {a.items} items; lowest coverage per method: "
        + ", ".join(f"{m} {v:.3f}" for m, v in worst.items())
        + f" ({time.time() - t0:.0f} s)\n"
    )
    rows = []
    for setting in ("vs Base", "paired"):
        for k in (3, 6):
            for label, sd in SEED_SD.items():
                r = coverage(setting, k, sd, trials=a.trials, n=a.items, outlier=(0.1, a.outlier_shift))
                rows.append({"setting": setting, "seeds": k, "regime": label, "coverage": f"{r['coverage']:.3f}"})
    out = pd.DataFrame(rows).pivot_table(
        index=["setting", "seeds"], columns="regime", values="coverage", aggfunc="first"
    )
    text += (
        f"\n\nWith one seed in ten shifted by {a.outlier_shift} (the truth: the well-behaved recipe's), GPQ:\n\n"
        + out[list(SEED_SD)].reset_index().to_markdown(index=False)
    )
    with open(a.out, "w") as f:
        f.write(text + note)
    print(text + note)


if __name__ == "__main__":
    main()
