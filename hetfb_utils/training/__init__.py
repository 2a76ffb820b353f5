"""Stages 3-4 — LoRA SFT (`-S` models), reward model + PPO or DPO (`-R` models), with TRL and PEFT
(notebooks 03 and 04).

| module | what |
|---|---|
| `stages` | what every stage shares: model directories, keys and manifests, the stage store shared by runs, resume, the train / held-out split |
| `sft` | `SFTTrainer` on the preferred responses |
| `reward` | the reward model (`reward.method`: a score head on frozen SFT features, or `RewardTrainer` + LoRA); judged per source beside the length baseline and a shuffled-label control; reward scores |
| `reward_head` | the score head: grouped cross-validated logistic regression, written into the model as a PEFT adapter |
| `heldout` | the held-out pairs every reward model is judged on, and the held-out prompts of the RL stage |
| `rl` | `PPOTrainer` (trl.experimental; LoRA value model) or `RLOOTrainer` against the reward model, or `DPOTrainer`; which adapters make a model |
| `rl_judge` | held-out reward before / after RL (paired interval), answer length, KL; the per-update held-out curve |
| `summary` | each stage's final metrics, log history, curves |
"""

from ..common.configs import lora_config
from ..common.errors import TrainingError
from .heldout import reward_pool, rl_prompts
from .reward import (
    RewardData,
    finish_reward,
    pair_features,
    pairwise_correct,
    reward_config,
    reward_data,
    reward_scores,
    reward_split,
    reward_trainer,
    train_reward,
)
from .reward_head import fit_head, install_head
from .rl import (
    dpo_config,
    dpo_trainer,
    finish_dpo,
    finish_policy,
    model_adapters,
    policy_of,
    policy_trainer,
    ppo_config,
    ppo_prompts,
    ppo_trainer,
    rloo_config,
    rloo_prompts,
    rloo_trainer,
    train_dpo,
    train_policy,
    train_ppo,
    train_rl,
    train_rloo,
)
from .sft import finish_sft, sft_config, sft_example, sft_trainer, train_sft
from .stages import (
    StageRun,
    begin_stage,
    last_checkpoint,
    preference_rows,
    require,
    split_rows,
    stage_dir,
    stage_key,
)
from .summary import fig_curves, log_frame, reward_judgement_table, rl_judgement_table, training_summary

__all__ = [
    "lora_config",
    "RewardData",
    "StageRun",
    "TrainingError",
    "begin_stage",
    "dpo_config",
    "dpo_trainer",
    "fig_curves",
    "finish_dpo",
    "finish_policy",
    "finish_reward",
    "finish_sft",
    "fit_head",
    "install_head",
    "last_checkpoint",
    "log_frame",
    "model_adapters",
    "pair_features",
    "pairwise_correct",
    "policy_of",
    "policy_trainer",
    "ppo_config",
    "ppo_prompts",
    "ppo_trainer",
    "preference_rows",
    "reward_config",
    "reward_data",
    "reward_pool",
    "reward_scores",
    "reward_split",
    "reward_trainer",
    "rl_prompts",
    "rloo_config",
    "rloo_prompts",
    "rloo_trainer",
    "sft_config",
    "sft_example",
    "sft_trainer",
    "split_rows",
    "stage_dir",
    "stage_key",
    "require",
    "train_dpo",
    "train_policy",
    "train_ppo",
    "train_reward",
    "train_rl",
    "train_rloo",
    "train_sft",
    "training_summary",
    "reward_judgement_table",
    "rl_judgement_table",
]
