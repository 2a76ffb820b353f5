"""One module per benchmark family. Each `eval_*` takes a model, its tokenizer, the benchmark's
items and a batch size, scores them through `hetfb_utils.models.scoring`, and returns (result dict,
per-item frame); the result dict's `items` holds every reported metric's value per item
(with the items' `id`), the units `uncertainty` resamples. `evaluation` decides which run on which model and caches the results.

| module | benchmark |
|---|---|
| `prompts` | the prompt formats (the paper's raw text, or the model's chat template) |
| `winobias` | the paper's Table 1 on WinoBias; WinoGender (Rudinger et al. 2018) |
| `winogrande` | WinoGrande accuracy, two scorings |
| `oasst` | held-out OASST human pairs: likelihood preference, prompts for reward judgements |
| `crows` | CrowS-Pairs, the authors' three templates |
| `ifeval` | IFEval through Google's checkers as packaged in lm-eval |
| `qualitative` | greedy answers to the paper's single-line prompts |

Each module registers its benchmarks (`evaluation.registry`) when it is imported, and this file imports every module of
the folder: a new benchmark is one new file here (its `Benchmark` says where it runs among the others: `order`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent.parent / "metrics"


@functools.cache
def metric(name: str):
    """The kit's Hugging Face `evaluate` module `hetfb_utils/evaluation/metrics/<name>`, loaded offline once
    (a local directory: `evaluate.load` reads the script beside its model card)."""
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def item_ids(texts) -> list[str]:
    """Stable short ids of evaluation items (from their text): per-item values of two runs are
    paired by them."""
    return [hashlib.sha1(str(t).encode()).hexdigest()[:12] for t in texts]


def _import_every_benchmark() -> None:
    """Import every module of this folder (each registers its benchmarks)."""
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        importlib.import_module(f"{__name__}.{info.name}")


_import_every_benchmark()
