"""Did the RL stage move the policy? Held-out prompts answered before and after, judged by the reward model.

* `judge_policies`: the SFT model (before) and the `-R` model (after) answer the same held-out prompts
  (`heldout.rl_prompts`: OASST held-out trees first, never trained on), `rl.judge_samples` sampled answers per
  prompt at temperature 1 (the distribution RL optimises) and the greedy answer (what the evaluation reads); the
  reward model scores them (the SFT model's side once per stage, shared by the real run and the control); the
  paired differences after - before get their bootstrap intervals (`stats.paired`), beside the answers' lengths in
  tokens and the KL divergence of the policy from the SFT model (a Monte-Carlo estimate on the sampled answers:
  the mean of log pi(y|x) - log pi_SFT(y|x)). The same judgement of a policy trained against the shuffled-label
  reward model is the control: it must not raise the real reward.
* `heldout_curve`: a callback that samples answers to a few held-out prompts after every update and logs their
  mean reward and length (`heldout/reward`, `heldout/length`) into the trainer's log, beside the trainer's own KL.
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


def formatted_prompts(params: Params, tok, n: int, max_prompt_tokens: int, own=None) -> list[str]:
    """`n` held-out prompts (`heldout.rl_prompts`; `own`: the variant's held-out rows of sources without a pool)
    through the chat template, each cut to its last `max_prompt_tokens` tokens."""
    from ..models.loading import format_prompt
    from .heldout import rl_prompts

    out = []
    for _, r in rl_prompts(params, n, own).iterrows():
        ids = tok(format_prompt(tok, r["prompt"], r["context"], params), add_special_tokens=False).input_ids
        out.append(tok.decode(ids[-max_prompt_tokens:]))
    return out


def greedy_rewards(
    policy, reward_model, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 16, generate_batch_size=None
):
    """(answers, rewards, lengths in tokens) of the policy's greedy answers (generated `generate_batch_size` at a
    time, default `batch_size`; scored `batch_size` at a time)."""
    from ..models.scoring import generate_greedy

    was_training = policy.training
    policy.eval()
    answers = generate_greedy(policy, tok, prompts, max_new_tokens, generate_batch_size or batch_size)
    policy.train(was_training)
    rewards = reward_scores(reward_model, tok, [p + a for p, a in zip(prompts, answers)], batch_size)
    lengths = np.array([len(tok(a, add_special_tokens=False).input_ids) for a in answers], dtype=float)
    return answers, rewards, lengths


def sample_answers(policy, tok, prompts: list[str], max_new_tokens: int, k: int, seed: int, batch_size: int = 16):
    """`k` answers per prompt sampled from the policy as RL trains it (temperature 1, no top-k / top-p), seeded:
    a dict with the token ids (`ids`, prompt + answer, left-padded prompts), the answer mask (its tokens up to and
    including the first end-of-sequence token), the answers' start column, their texts and lengths in tokens, one
    row per (prompt, sample), prompt-major."""
    import torch

    rows = [p for p in prompts for _ in range(k)]
    side, tok.padding_side = tok.padding_side, "left"
    was_training = policy.training
    policy.eval()
    out = []
    # the global RNG is seeded for these samples and restored afterwards: the per-update curve samples inside
    # training, and must not change the draws of the trainer it watches
    cuda = [policy.device.index or 0] if policy.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            for s in range(0, len(rows), batch_size):
                torch.manual_seed(seed + s)
                enc = tok(rows[s : s + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(policy.device)
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
                start = enc["input_ids"].shape[1]
                resp = gen[:, start:]
                is_eos = (resp == tok.eos_token_id).int()
                mask = ((is_eos.cumsum(1) - is_eos) == 0) & (resp != tok.pad_token_id)
                out.append((gen, enc["attention_mask"], mask, start))
    finally:
        tok.padding_side = side
        policy.train(was_training)
    texts = [tok.decode(g[st:][m], skip_special_tokens=True) for g, _, mask, st in out for g, m in zip(g, mask)]
    lengths = np.concatenate([mask.sum(1).cpu().numpy() for *_, mask, _ in out]).astype(float)
    return {"batches": out, "texts": texts, "lengths": lengths, "k": k}


def answer_logprobs(model, sample: dict) -> np.ndarray:
    """log p(answer | prompt) under `model` of each sampled answer (summed over its masked tokens). Only the answer
    positions get logits (`logits_to_keep`): the vocabulary projection and its log-softmax over the prompt
    positions were over a third of the judgement's time (measured in docs/measurements.md)."""
    import torch

    res = []
    for gen, prompt_attention, mask, start in sample["batches"]:
        attention = torch.cat([prompt_attention, mask.long()], dim=1)
        keep = gen.shape[1] - start + 1  # the logits that predict the answer's tokens: positions start-1 .. end-1
        with torch.no_grad():
            logits = model(input_ids=gen, attention_mask=attention, logits_to_keep=keep).logits[:, :-1].float()
        tokens = logits.log_softmax(-1).gather(-1, gen[:, start:].unsqueeze(-1)).squeeze(-1)
        res.append((tokens * mask).sum(1).cpu().numpy())
    return np.concatenate(res).astype(np.float64)


def per_prompt(values: np.ndarray, k: int) -> np.ndarray:
    """Mean over each prompt's k samples (rows prompt-major)."""
    return np.asarray(values, dtype=np.float64).reshape(-1, k).mean(1)


def sampled_rewards(sample: dict, reward_model, tok, prompts: list[str], batch_size: int = 16) -> np.ndarray:
    """The reward model's score of each sampled answer, averaged per prompt: the policy's expected reward there."""
    k = sample["k"]
    texts = [p + a for p, a in zip((p for p in prompts for _ in range(k)), sample["texts"])]
    return per_prompt(reward_scores(reward_model, tok, texts, batch_size), k)


def answer_side(params: Params, policy, reward_model, tok, prompts: list[str]) -> dict:
    """One policy's answers to the held-out prompts: `rl.judge_samples` sampled answers per prompt (seeded by the
    evaluation seed alone, so that before and after draw common random numbers) with the reward model's mean score
    per prompt, and the greedy answer with its score and length."""
    max_new, bs, k = response_length(params), params.evaluation.batch_size, params.rl.judge_samples
    gen_bs = params.evaluation.generate_batch_size  # generation in larger batches: measured 1.3x faster than 16
    sample = sample_answers(policy, tok, prompts, max_new, k, seed_for(params.eval_seed, "rl-judge"), gen_bs)
    _, greedy, greedy_len = greedy_rewards(policy, reward_model, tok, prompts, max_new, bs, gen_bs)
    return {
        "sample": sample,
        "sampled": sampled_rewards(sample, reward_model, tok, prompts, bs),
        "greedy": greedy,
        "greedy_length": greedy_len,
    }


def judge_policies(
    params: Params, before, after, reward_model, tok, prompts: list[str], label: str, before_side: dict | None = None
) -> dict:
    """Did RL raise the reward on held-out prompts? As flat metrics `<label>_...`:

    * `reward_gain`: the policy's expected reward (the RL objective: the mean reward of `rl.judge_samples` answers
      sampled per prompt at temperature 1), after - before, paired over prompts, with its interval;
    * `greedy_gain`: the same for the greedy answer (what the evaluation reads), with its interval;
    * `kl`: KL(after || before), estimated on the sampled answers (mean of log pi - log pi_SFT), with its interval;
    * the answers' mean length in tokens, sampled and greedy, before and after.

    `before_side`: the SFT model's `answer_side`, when the caller judges several policies against it (the real run
    and the shuffled-label control); computed here otherwise."""
    b = before_side or answer_side(params, before, reward_model, tok, prompts)
    a = answer_side(params, after, reward_model, tok, prompts)
    s1, k = a["sample"], params.rl.judge_samples
    kl = per_prompt(answer_logprobs(after, s1) - answer_logprobs(before, s1), k)
    out = {f"{label}_prompts": len(prompts), f"{label}_samples_per_prompt": k}
    for key, name in (("reward", "sampled"), ("greedy", "greedy")):
        d = paired(a[name], b[name], seed=seed_for(params.eval_seed, "rl", label, name))
        out.update(
            {
                f"{label}_{key}_before": float(np.mean(b[name])),
                f"{label}_{key}_after": float(np.mean(a[name])),
                f"{label}_{key}_gain": d["delta"],
                f"{label}_{key}_gain_lo": d["delta_lo"],
                f"{label}_{key}_gain_hi": d["delta_hi"],
                f"{label}_{key}_gain_p": d["p"],
            }
        )
    kl_mean, kl_lo, kl_hi = interval(kl, seed=seed_for(params.eval_seed, "kl", label))
    out.update({f"{label}_kl": kl_mean, f"{label}_kl_lo": kl_lo, f"{label}_kl_hi": kl_hi})
    out.update(
        {
            f"{label}_length_before": float(np.mean(b["sample"]["lengths"])),
            f"{label}_length_after": float(np.mean(s1["lengths"])),
            f"{label}_greedy_length_before": float(np.mean(b["greedy_length"])),
            f"{label}_greedy_length_after": float(np.mean(a["greedy_length"])),
        }
    )
    return out


def heldout_curve(
    policy_fn, reward_model, tok, prompts: list[str], max_new_tokens: int, log_fn=None, batch_size=16, k=4, seed=0
):
    """A `TrainerCallback` that, before training and after every update, samples `k` answers to each of `prompts`
    from `policy_fn()` (the policy as the trainer holds it; the same seed every time) and logs their mean reward and
    length (`heldout/reward`, `heldout/length`) through `log_fn` (the trainer's `log`: into its log history and
    TensorBoard), else into the log history alone."""
    from transformers import TrainerCallback

    class HeldoutCurve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def _point(self, state) -> None:
            sample = sample_answers(policy_fn(), tok, prompts, max_new_tokens, k, seed, batch_size)
            r = sampled_rewards(sample, reward_model, tok, prompts, batch_size)
            point = {"heldout/reward": float(np.mean(r)), "heldout/length": float(np.mean(sample["lengths"]))}
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
