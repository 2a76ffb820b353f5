"""Stage 5 — every model of a run on every benchmark (notebook 05).

| module | what |
|---|---|
| `evaluate` | the run's models, the evaluation sets, one model on every metric (cached per model, metric and items), the reward models' judgements |
| `benchmarks/` | one module per benchmark family (WinoBias + WinoGender, WinoGrande, OASST, CrowS-Pairs, IFEval), each returning per-item values |
| `metrics/` | the WinoBias and WinoGender metrics as Hugging Face `evaluate` modules |
| `tables` | Table 1 (ours and the paper's) and the other benchmarks' tables |
| `figures` | metrics vs keep-fraction, the model x metric heatmap with intervals, WinoGender occupations |
| `registry` | the benchmark registry: one module declares a benchmark (items, scoring, table) and everything picks it up |
"""

from .evaluate import (
    ModelSpec,
    ResultCache,
    eval_data,
    evaluate_model,
    model_fingerprint,
    reward_judgements,
    run_models,
)
from .figures import fig_heatmap, fig_metric_vs_fraction, fig_models_by_metrics, fig_winogender
from .tables import PAPER_TABLE1, TABLE1_COLUMNS, other_tables, side_by_side, table1

__all__ = [
    "PAPER_TABLE1",
    "TABLE1_COLUMNS",
    "ModelSpec",
    "ResultCache",
    "eval_data",
    "evaluate_model",
    "fig_heatmap",
    "fig_models_by_metrics",
    "fig_metric_vs_fraction",
    "fig_winogender",
    "model_fingerprint",
    "other_tables",
    "reward_judgements",
    "run_models",
    "side_by_side",
    "table1",
]
