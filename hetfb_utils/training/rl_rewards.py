"""The rewards an RL stage trains against, each in the form its trainer reads, all under the one rule (`reward_rule`):

* `real`: the variant's reward model;
* `shuffled` (control): the shuffled-label head (`<reward>/shuffled`), rescaled to the real reward's spread;
* `length` (control): the answer's length in tokens (the end token included) alone, at the real reward's spread.

"Spread" is the standard deviation of a reward over the SFT policy's sampled answers to the judged held-out prompts
(the answers RL starts from): a control with a larger spread would take larger steps, and "real minus control" would
mix signal with step size. PPO reads a module (`reward_rule.function_reward`: TRL's `get_reward` then reads exactly
these numbers); RLOO calls a function of (prompts, completion token ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RewardSpec:
    """One reward of an RL run: `kind` (real, shuffled, length), the reward model it reads (None for length) and the
    factor its scores are multiplied by."""

    kind: str
    model: object = None
    scale: float = 1.0


def ppo_reward(spec: RewardSpec, tok, context_length: int):
    """The module PPO's `get_reward` reads (`function_reward`): the spec's reward of each rollout (`context_length`:
    the columns of the prompt, fixed by `rl.policy_prompts`' padding)."""
    from .reward_rule import answer_length_reward, closed_scores, function_reward

    if spec.kind == "length":
        return function_reward(answer_length_reward(context_length, spec.scale))
    eos, pad, model, scale = tok.eos_token_id, tok.pad_token_id, spec.model, spec.scale
    module = function_reward(lambda ids, mask: scale * closed_scores(model, ids, mask, eos, pad))
    module.model = model  # a registered submodule: PPO moves it to its device and disables its dropout
    return module


def rloo_reward(spec: RewardSpec, tok, batch_size: int = 16):
    """The function RLOO calls: (prompts, completions, completion_ids) -> the spec's reward of each completion, on the
    prompt's tokens and the completion's token ids as sampled."""
    from .reward_rule import ids_scores

    def reward_model_score(prompts, completions, completion_ids=None, **_):
        ids = (
            completion_ids
            if completion_ids is not None
            else [tok(c, add_special_tokens=False).input_ids for c in completions]
        )
        if spec.kind == "length":
            return [spec.scale * len(a) for a in ids]  # tokens, the end token included (as PPO counts them)
        p_ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
        return (spec.scale * ids_scores(spec.model, tok, p_ids, [list(a) for a in ids], batch_size)).tolist()

    reward_model_score.__name__ = f"{spec.kind}_reward"
    return reward_model_score


def spread_scale(real: np.ndarray, control: np.ndarray) -> float:
    """The factor that gives `control` the standard deviation of `real` (1 when the control does not vary)."""
    sd = float(np.std(control))
    return float(np.std(real)) / sd if sd > 0 else 1.0


def control_spec(kind: str, sft_side: dict, shuffled_model, tok, batch_size: int = 16) -> RewardSpec:
    """The control reward `kind` at the real reward's spread over the SFT policy's sampled answers (`sft_side`:
    `rl_judge.answer_side` of the SFT model, with the real reward's scores)."""
    from .rl_judge import sample_scores

    sample = sft_side["sample"]
    if kind == "length":
        return RewardSpec("length", None, spread_scale(sft_side["scores"], sample["lengths"]))
    scores = sample_scores(sample, shuffled_model, tok, batch_size)
    return RewardSpec("shuffled", shuffled_model, spread_scale(sft_side["scores"], scores))
