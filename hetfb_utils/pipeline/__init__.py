"""What drives the stages: the notebook runner, training launches, seed groups, cost planning, the bench,
and what the notebooks call to set up and to show their worked examples.

| module | what |
|---|---|
| `runner` | notebooks 01-05 with papermill: markers, resume, why a notebook runs, the manifest, seed groups |
| `stage_store` | notebooks 01-02 shared by runs with the same inputs; temporaries an interrupted run left |
| `launch` | a training stage in-process or under `accelerate launch`, with the launch checks |
| `notebook` | `start(params_file, overrides)`: the one setup line of every notebook |
| `walkthrough` | one real example per stage, laid out for the notebooks |
| `plan` | what a params file costs (offline): parameters, memory, tokens, GPU-hours |
| `bench` | `make bench`: scorer speed-up, SFT throughput, stage times, side by side in one run |
"""

from .launch import accelerate_command, run_training, train_stage
from .notebook import start
from .runner import STAGES, execute
from .seeds import finished_seed_runs, run_seeds, seeds_and_compare

__all__ = [
    "STAGES",
    "accelerate_command",
    "execute",
    "finished_seed_runs",
    "run_seeds",
    "run_training",
    "seeds_and_compare",
    "start",
    "train_stage",
]
