"""Stages 3-4 — LoRA SFT (`-S` models), reward model + PPO or DPO (`-R` models), with TRL and PEFT
(notebooks 03 and 04).

| module | what |
|---|---|
| `stages` | what every stage shares: model directories, keys and manifests, the stage store shared by runs, resume, the train / held-out split |
| `sft` | `SFTTrainer` on the preferred responses |
| `reward_rule` | the one reward rule (the score at the end token that closes an answer), for every scorer: the head's fit, PPO (the module TRL reads), RLOO, the judge, the evaluation |
| `reward` | the reward model (`reward.method`: a score head on frozen features, or `RewardTrainer` + LoRA; `reward.backbone`: SFT or base, whose features are cached) |
| `reward_head` | the score head: grouped cross-validated logistic regression (one-standard-error rule), unit spread, the shuffled-label control heads; written into the model as a PEFT adapter |
| `reward_judge` | what a reward model learned, per source: accuracy beside the length baseline and the shuffled heads, ties as half, intervals over groups, verdicts |
| `heldout` | the held-out pairs every reward model is judged on, and the held-out prompts of the RL stage |
| `rl` | `PPOTrainer` (trl.experimental; LoRA value model) or `RLOOTrainer` against the reward model on the sources it learned, with control runs; which adapters make a model |
| `rl_rewards` | the rewards RL trains against (real, shuffled-label, length) in the form each trainer reads, at one spread |
| `rl_judge` | held-out reward before / after RL (paired interval), length-matched gain, finish rate, length, KL; the per-update held-out curve |
| `dpo` | `DPOTrainer` on the pairs (`rl.algorithm: dpo`), one builder for the pipeline and the notebook |
| `summary` | each stage's final metrics, log history, curves |
"""

from ..common.configs import lora_config
from ..common.errors import TrainingError
from .dpo import dpo_config, dpo_stage_trainer, dpo_trainer, finish_dpo, train_dpo
from .heldout import reward_pool, rl_prompts
from .reward import (
    RewardData,
    finish_reward,
    frozen_pair_features,
    head_fit,
    load_variant_reward,
    pair_features,
    pairwise_correct,
    reward_backbone,
    reward_config,
    reward_data,
    reward_split,
    reward_stage_trainer,
    reward_trainer,
    train_reward,
)
from .reward_head import fit_head, install_head, shuffled_heads
from .reward_judge import judgement_frame, learned_sources, verdict_frame
from .reward_rule import closed_scores, reward_scores
from .rl import (
    finish_policy,
    judged_prompts,
    model_adapters,
    policy_of,
    policy_trainer,
    ppo_config,
    ppo_prompts,
    ppo_trainer,
    rl_sources,
    rloo_config,
    rloo_prompts,
    rloo_trainer,
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
    "closed_scores",
    "dpo_config",
    "dpo_stage_trainer",
    "dpo_trainer",
    "fig_curves",
    "finish_dpo",
    "finish_policy",
    "finish_reward",
    "finish_sft",
    "fit_head",
    "frozen_pair_features",
    "head_fit",
    "install_head",
    "judged_prompts",
    "judgement_frame",
    "learned_sources",
    "load_variant_reward",
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
    "reward_backbone",
    "reward_config",
    "reward_data",
    "reward_pool",
    "reward_scores",
    "reward_split",
    "reward_stage_trainer",
    "reward_trainer",
    "rl_prompts",
    "rl_sources",
    "shuffled_heads",
    "verdict_frame",
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
