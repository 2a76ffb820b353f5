"""hetfb — fine-tuning LLMs on heterogeneous feedback (Aponte et al., arXiv 2408.02861), as notebooks.

The package is laid out as the pipeline the notebooks walk; a folder never imports a folder below it in
this list (`tests/test_house.py` checks it):

| folder | stage | notebook |
|---|---|---|
| `common/` | what every stage stands on: the params schema, errors, reports, statistics, code versions | |
| `data/` | 1: every source to (prompt, chosen, rejected), the union | 01 |
| `selection/` | 2: quality x diversity subsets (and their random / quality / diversity controls) | 02 |
| `models/` | base models, adapters, prompt formats; the batched scoring engine | |
| `training/` | 3-4: LoRA SFT, reward model + PPO or DPO (TRL) | 03, 04 |
| `evaluation/` | 5: every model on WinoBias (Table 1), WinoGender, WinoGrande, OASST, CrowS, IFEval | 05 |
| `analysis/` | which differences are real: item-level intervals, recipe-level Multi-Bootstrap over training seeds, runs compared, the paper's claims scored, RESULTS.md | 06 |
| `pipeline/` | the runner (papermill), training launches, seed groups, notebook setup and worked examples, plan, bench | |

Each folder's `__init__` names its public functions; `python -m hetfb_utils --help` lists the commands.
"""
