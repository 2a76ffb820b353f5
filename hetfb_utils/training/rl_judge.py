"""Did the RL stage move the policy? Held-out prompts answered before and after, judged by the reward model.

* `judge_policies`: the SFT model (before) and the `-R` model (after) answer the same held-out prompts greedily
  (`heldout.rl_prompts`: OASST held-out trees, never trained on); the reward model scores both; the paired
  difference after - before gets its bootstrap interval (`stats.paired`), beside the answers' length in tokens
  and the KL divergence of the policy from the SFT model (a Monte-Carlo estimate on sampled answers: the mean
  over prompts of log pi(y|x) - log pi_SFT(y|x)). The same judgement of a policy trained against the
  shuffled-label reward model is the control: it must not raise the real reward.
* `HeldoutCurve`: a callback that answers a few held-out prompts after every update and logs their mean reward and
  length (`heldout/reward`, `heldout/length`) into the trainer's log history, beside the trainer's own KL.
"""

from __future__ import annotations

import numpy as np

from ..common.params import Params
from ..common.stats import interval, paired, seed_for
from .reward import reward_scores


def response_length(params: Params) -> int:
    """How many tokens the RL stage lets the policy answer with (PPO's `response_length`, RLOO's
    `max_completion_length`; the configs' defaults otherwise)."""
    from ..common.configs import config_class

    stage = params.rl.algorithm if params.rl.algorithm in ("ppo", "rloo") else "ppo"
    field = "response_length" if stage == "ppo" else "max_completion_length"
    given = getattr(params.rl, stage).args.get(field)
    return int(given if given is not None else config_class(stage).__dataclass_fields__[field].default)


def formatted_prompts(params: Params, tok, n: int, max_prompt_tokens: int) -> list[str]:
    """`n` held-out prompts through the chat template, each cut to its last `max_prompt_tokens` tokens."""
    from ..models.loading import format_prompt
    from .heldout import rl_prompts

    out = []
    for _, r in rl_prompts(params, n).iterrows():
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        out.append(tok.decode(ids[-max_prompt_tokens:]))
    return out


def greedy_rewards(policy, reward_model, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 16):
    """(answers, rewards, lengths in tokens) of the policy's greedy answers."""
    from ..models.scoring import generate_greedy

    was_training = policy.training
    policy.eval()
    answers = generate_greedy(policy, tok, prompts, max_new_tokens, batch_size)
    policy.train(was_training)
    rewards = reward_scores(reward_model, tok, [p + a for p, a in zip(prompts, answers)], batch_size)
    lengths = np.array([len(tok(a, add_special_tokens=False).input_ids) for a in answers], dtype=float)
    return answers, rewards, lengths


def sampled_kl(policy, reference, tok, prompts: list[str], max_new_tokens: int, seed: int) -> np.ndarray:
    """Per prompt, log pi(y|x) - log pi_ref(y|x) of one answer y sampled from the policy (temperature 1), summed
    over y's tokens (up to and including its end-of-sequence token) as generated: its mean over prompts estimates
    KL(pi || pi_ref)."""
    import torch

    torch.manual_seed(seed)
    side, tok.padding_side = tok.padding_side, "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
        with torch.no_grad():
            gen = policy.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
    finally:
        tok.padding_side = side
    start = enc["input_ids"].shape[1]
    resp = gen[:, start:]
    after_eos = (resp == tok.eos_token_id).int().cumsum(1) - (resp == tok.eos_token_id).int()  # tokens past the 1st eos
    mask = (after_eos == 0) & (resp != tok.pad_token_id)
    attention = torch.cat([enc["attention_mask"], mask.long()], dim=1)

    def logp(model) -> torch.Tensor:
        with torch.no_grad():
            logits = model(input_ids=gen, attention_mask=attention).logits[:, start - 1 : -1].float()
        tokens = logits.log_softmax(-1).gather(-1, resp.unsqueeze(-1)).squeeze(-1)
        return (tokens * mask).sum(1)

    return (logp(policy) - logp(reference)).cpu().numpy().astype(np.float64)


def judge_policies(params: Params, before, after, reward_model, tok, prompts: list[str], label: str) -> dict:
    """Held-out reward after - before (paired, with its interval), lengths, and the KL of `after` from `before`,
    as flat metrics `<label>_...`."""
    max_new = response_length(params)
    bs = params.evaluation.batch_size
    _, r0, l0 = greedy_rewards(before, reward_model, tok, prompts, max_new, bs)
    _, r1, l1 = greedy_rewards(after, reward_model, tok, prompts, max_new, bs)
    d = paired(r1, r0, seed=seed_for(params.eval_seed, "rl", label))
    kl = sampled_kl(after, before, tok, prompts, max_new, params.training_seed)
    kl_mean, kl_lo, kl_hi = interval(kl, seed=seed_for(params.eval_seed, "kl", label)) if len(kl) else (np.nan,) * 3
    return {
        f"{label}_prompts": len(prompts),
        f"{label}_reward_before": float(np.mean(r0)),
        f"{label}_reward_after": float(np.mean(r1)),
        f"{label}_reward_gain": d["delta"],
        f"{label}_reward_gain_lo": d["delta_lo"],
        f"{label}_reward_gain_hi": d["delta_hi"],
        f"{label}_reward_gain_p": d["p"],
        f"{label}_length_before": float(np.mean(l0)),
        f"{label}_length_after": float(np.mean(l1)),
        f"{label}_kl": kl_mean,
        f"{label}_kl_lo": kl_lo,
        f"{label}_kl_hi": kl_hi,
    }


def heldout_curve(policy_fn, reward_model, tok, prompts: list[str], max_new_tokens: int, log_fn=None, batch_size=16):
    """A `TrainerCallback` that, before training and after every update, answers `prompts` greedily with
    `policy_fn()` (the policy as the trainer holds it) and logs `heldout/reward` and `heldout/length` through
    `log_fn` (the trainer's `log`: into its log history and TensorBoard), else into the log history alone."""
    from transformers import TrainerCallback

    class HeldoutCurve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def _point(self, state) -> None:
            _, r, n = greedy_rewards(policy_fn(), reward_model, tok, prompts, max_new_tokens, batch_size)
            point = {"heldout/reward": float(np.mean(r)), "heldout/length": float(np.mean(n))}
            self.points.append({"step": state.global_step, **point})
            if log_fn is not None:
                log_fn(point)
            else:
                state.log_history.append({"step": state.global_step, **point})

        def on_train_begin(self, args, state, control, **kw):
            self._point(state)

        def on_step_end(self, args, state, control, **kw):
            self._point(state)

    return HeldoutCurve()
