"""Stages 3-4 — LoRA SFT (`-S` models), reward model + PPO or DPO (`-R` models), with TRL and PEFT
(notebooks 03 and 04).

| module | what |
|---|---|
| `stages` | what every stage shares: model directories, keys and manifests, the stage store shared by runs, resume, the train / held-out split |
| `sft` | `SFTTrainer` on the preferred responses |
| `reward` | `RewardTrainer` on the pairs; held-out pairwise accuracy; reward scores |
| `rl` | `PPOTrainer` (trl.experimental) against the reward model, or `DPOTrainer`; which adapters make a model |
| `probe` | diagnostic: a linear probe of the reward task on the SFT model's features |
| `summary` | each stage's final metrics, log history, curves |
"""

from ..common.errors import TrainingError
from .probe import feature_probe, feature_probe_table
from .reward import pairwise_correct, reward_config, reward_scores, reward_split, reward_trainer, train_reward
from .rl import model_adapters, ppo_config, ppo_prompts, ppo_trainer, train_dpo, train_ppo, train_rl
from .sft import sft_config, sft_example, train_sft
from .stages import preference_rows, split_rows, stage_dir, stage_key
from .summary import fig_curves, log_frame, training_summary

__all__ = [
    "TrainingError",
    "feature_probe",
    "feature_probe_table",
    "fig_curves",
    "log_frame",
    "model_adapters",
    "pairwise_correct",
    "ppo_config",
    "ppo_prompts",
    "ppo_trainer",
    "preference_rows",
    "reward_config",
    "reward_scores",
    "reward_split",
    "reward_trainer",
    "sft_config",
    "sft_example",
    "split_rows",
    "stage_dir",
    "stage_key",
    "train_dpo",
    "train_ppo",
    "train_reward",
    "train_rl",
    "train_sft",
    "training_summary",
]
