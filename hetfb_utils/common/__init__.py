"""What every stage stands on; imports nothing from the stages.

| module | what |
|---|---|
| `params` | the one validated schema of a params file: seeds, derived paths, digests, loading |
| `sections` | its sections: data sources, selection, model, the training stages, training and evaluation settings |
| `params_files` | YAML (strict), `extends`, `-p key=value` overrides |
| `configs` | the TRL / PEFT config dataclasses the training sections map onto (names and types checked) |
| `params_doc` | the parameter reference generated from the schema (`docs/params.md`) |
| `errors` | the kit's errors (`KitError` and one per concern) |
| `locations` | the data mirror and its files |
| `report` | atomic writes, tables (CSV + Markdown) and figures with provenance stamps |
| `stats` | intervals over evaluation items, paired tests, Wilson intervals (scipy) |
| `version` | hashes of the package's own code, by group: what keys every cache |
| `progress`, `distributed` | progress lines for the runner's console; several processes, one stage |
"""

from .errors import DataError, KitError, ModelError, ParamsError, RunFailed, RunReadError, TrainingError
from .params import Params, load_params, variant_name

__all__ = [
    "DataError",
    "KitError",
    "ModelError",
    "Params",
    "ParamsError",
    "RunFailed",
    "RunReadError",
    "TrainingError",
    "load_params",
    "variant_name",
]
