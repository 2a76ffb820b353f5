"""Which differences are real (notebooks 05 and 06, `compare`, `seeds`, `results`).

| module | what |
|---|---|
| `uncertainty` | item-level intervals of every table of one run and paired differences (vs Base, R vs S): conclusions about the trained models |
| `runs` | finished runs read back (clear errors for damaged or foreign runs); seed groups: runs that differ only in `training.seed` |
| `recipes` | recipe-level intervals with the Multi-Bootstrap over training seeds and items; A/A calibration; variance split and design |
| `claims` | the paper's claims scored: supported / contradicted / not distinguishable |
| `comparison` | runs side by side, every view saved with its figures and a worded summary |
| `results` | RESULTS.md generated from finished runs and comparisons |
"""

from .claims import CLAIMS, score_claims
from .comparison import compare, compare_and_save, fig_deltas, save_comparison, summary_markdown
from .recipes import aa_calibration, recipe_differences, recipe_table, variance_split
from .results import write_results
from .runs import Run, load_run, recipe_signature, seed_groups
from .uncertainty import (
    MODEL_LEVEL,
    differences,
    interval_tables,
    save_interval_tables,
    table1_with_intervals,
    wide_with_intervals,
)

__all__ = [
    "CLAIMS",
    "MODEL_LEVEL",
    "Run",
    "aa_calibration",
    "compare",
    "compare_and_save",
    "differences",
    "fig_deltas",
    "interval_tables",
    "load_run",
    "recipe_differences",
    "recipe_signature",
    "recipe_table",
    "save_comparison",
    "save_interval_tables",
    "score_claims",
    "seed_groups",
    "summary_markdown",
    "table1_with_intervals",
    "variance_split",
    "wide_with_intervals",
    "write_results",
]
