"""Which differences are real (notebooks 05 and 06, `compare`, `seeds`, `results`).

| module | what |
|---|---|
| `uncertainty` | item-level intervals of every table of one run and paired differences (vs Base, R vs S): conclusions about the trained models |
| `runs` | finished runs read back (clear errors for damaged or foreign runs); seed groups: runs that differ only in `training.seed` |
| `multiboot` | recipe-level intervals: seeds and items random (the Multi-Bootstrap's model), a generalized pivotal interval that covers at 2-5 seeds; the joint bootstrap kept for comparison |
| `design` | variance components (with an upper bound on the seed variance), power (noncentral t), seeds and items a study needs |
| `calibration` | simulated studies with a known truth: the coverage of the intervals in every setting the kit reports |
| `recipes` | every model's value and every comparison at recipe level (or labelled one-seed / exploratory); the variance split and design |
| `aa` | A/A calibration on real runs: item-level, unpaired, paired and vs-Base comparisons whose truth is 0 |
| `replication` | verdicts re-scored on new training seeds: replicated, not replicated, reversed |
| `claims` | the paper's claims scored (Holm-adjusted, non-inferiority where the paper says "keeps"), naming the comparison each tests |
| `comparison` | runs side by side, every view saved with its figures and a worded summary |
| `results` | RESULTS.md generated from finished runs and comparisons |
"""

from .aa import aa_calibration
from .claims import CLAIMS, score_claims
from .comparison import compare, compare_and_save, fig_deltas, save_comparison, summary_markdown
from .recipes import recipe_differences, recipe_table, variance_split
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
