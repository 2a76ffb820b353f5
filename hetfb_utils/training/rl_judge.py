"""Did the RL stage move the policy? Held-out prompts answered before and after, judged by the reward model.

* `judge_policies`: the SFT model (before) and the `-R` model (after) answer the same held-out prompts
  (`heldout.rl_prompts`: the `judged` half of the held-out prompts of the sources RL trains on, never trained on):
  `rl.judge_samples` answers sampled per prompt at the RL stage's own temperature (the distribution RL optimises) and
  the greedy answer (what the evaluation reads). The reward model scores them under the one rule (`reward_rule`, on
  the sampled token ids as the policy made them); the paired differences after - before get their bootstrap
  intervals (`stats.paired`), beside the answers' length in tokens, the share that finished (emitted the end token)
  and the KL divergence of the policy from the SFT model (a Monte-Carlo estimate on the sampled answers at that
  temperature: the mean of log pi(y|x) - log pi_SFT(y|x)). The **length-matched gain** holds length fixed: the
  intercept of the per-prompt regression of the reward change on the length change (`scipy.stats.linregress`), the
  gain an answer of unchanged length would get. The same judgement of a policy trained against a control reward
  (shuffled labels; length alone) says what the real reward's gain is not.
* `heldout_curve`: a callback that samples answers to a few held-out prompts after every update and logs their
  mean reward and length (`heldout/reward`, `heldout/length`) into the trainer's log, beside the trainer's own KL.
"""

from __future__ import annotations

import numpy as np

from ..common.params import Params
from ..common.stats import interval, paired, seed_for
from .reward_rule import ids_scores, reward_scores


def rl_setting(params: Params, field: str):
    """A field of the RL stage's TRL config (PPO's or RLOO's), as the params give it or the config's default."""
    from ..common.configs import config_class

    stage = params.rl.algorithm if params.rl.algorithm in ("ppo", "rloo") else "ppo"
    given = getattr(params.rl, stage).args.get(field)
    return given if given is not None else config_class(stage).__dataclass_fields__[field].default


def response_length(params: Params) -> int:
    """How many tokens the RL stage lets the policy answer with (PPO's `response_length`, RLOO's
    `max_completion_length`)."""
    stage = params.rl.algorithm if params.rl.algorithm in ("ppo", "rloo") else "ppo"
    return int(rl_setting(params, "response_length" if stage == "ppo" else "max_completion_length"))


def sample_temperature(params: Params) -> float:
    """The temperature the RL trainer samples at (PPO's default 0.7, RLOO's 1.0): the judge samples at it too."""
    return float(rl_setting(params, "temperature"))


def formatted_prompts(params: Params, tok, n: int, max_prompt_tokens: int, own=None, sources=None) -> list[str]:
    """`n` held-out prompts (`heldout.rl_prompts`; `own`: the variant's held-out rows of sources without a pool;
    `sources`: those RL trains on) through the chat template, each cut to its last `max_prompt_tokens` tokens."""
    from ..models.loading import format_prompt
    from .heldout import rl_prompts

    out = []
    for _, r in rl_prompts(params, n, own, sources).iterrows():
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


def _sample_batch(policy, tok, rows: list[str], max_new_tokens: int, temperature: float):
    """One batch of sampled answers: (token ids, the prompts' attention mask, the answer mask: its tokens up to and
    including the first end-of-sequence token, the answers' start column, each answer's log-probability under the
    sampling distribution, read off the generation's scores: the logits after the temperature)."""
    import torch

    enc = tok(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
    with torch.no_grad():
        res = policy.generate(
            **enc,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
    gen, start = res.sequences, enc["input_ids"].shape[1]
    resp = gen[:, start:]
    is_eos = (resp == tok.eos_token_id).int()
    mask = ((is_eos.cumsum(1) - is_eos) == 0) & (resp != tok.pad_token_id)
    steps = torch.stack(res.scores, 1).float().log_softmax(-1)
    own = steps.gather(-1, resp[:, : steps.shape[1]].unsqueeze(-1)).squeeze(-1)
    logp = (own * mask[:, : steps.shape[1]]).sum(1).cpu().numpy()
    return gen, enc["attention_mask"], mask, start, logp


def sample_answers(
    policy, tok, prompts: list[str], max_new_tokens: int, k: int, seed: int, batch_size: int = 16, temperature=1.0
):
    """`k` answers per prompt sampled from the policy at `temperature` (no top-k / top-p), seeded: a dict with the
    batches (token ids: left-padded prompt + answer; the prompt's attention mask; the answer mask; the answers' start
    column), each row's prompt and answer token ids, texts, lengths in tokens, whether it finished, and its
    log-probability under the sampling distribution (`logprobs`: the policy's own side of the KL, with no second
    pass); one row per (prompt, sample), prompt-major."""
    import torch

    rows = [p for p in prompts for _ in range(k)]
    side, tok.padding_side = tok.padding_side, "left"
    was_training = policy.training
    policy.eval()
    out, logps = [], []
    # the global RNG is seeded for these samples and restored afterwards: the per-update curve samples inside
    # training, and must not change the draws of the trainer it watches
    cuda = [policy.device.index or 0] if policy.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            for s in range(0, len(rows), batch_size):
                torch.manual_seed(seed + s)
                *batch, logp = _sample_batch(policy, tok, rows[s : s + batch_size], max_new_tokens, temperature)
                out.append(tuple(batch))
                logps.append(logp)
    finally:
        tok.padding_side = side
        policy.train(was_training)
    prompt_ids = [g[:st][a.bool()].tolist() for g, att, _, st in out for g, a in zip(g, att)]
    answer_ids = [g[st:][m].tolist() for g, _, mask, st in out for g, m in zip(g, mask)]
    return {
        "batches": out,
        "prompt_ids": prompt_ids,
        "answer_ids": answer_ids,
        "texts": [tok.decode(a, skip_special_tokens=True) for a in answer_ids],
        "lengths": np.array([len(a) for a in answer_ids], dtype=float),
        "finished": np.array([bool(a) and a[-1] == tok.eos_token_id for a in answer_ids]),
        "logprobs": np.concatenate(logps).astype(np.float64) if logps else np.zeros(0),
        "k": k,
        "temperature": temperature,
    }


def answer_logprobs(model, sample: dict) -> np.ndarray:
    """log p(answer | prompt) under `model` at the sample's temperature (logits / T, as the RL trainer reads them),
    summed over each sampled answer's tokens. Only the answer positions get logits (`logits_to_keep`)."""
    import torch

    res = []
    t = sample.get("temperature", 1.0)
    for gen, prompt_attention, mask, start in sample["batches"]:
        attention = torch.cat([prompt_attention, mask.long()], dim=1)
        keep = gen.shape[1] - start + 1  # the logits that predict the answer's tokens: positions start-1 .. end-1
        with torch.no_grad():
            logits = model(input_ids=gen, attention_mask=attention, logits_to_keep=keep).logits[:, :-1].float() / t
        tokens = logits.log_softmax(-1).gather(-1, gen[:, start:].unsqueeze(-1)).squeeze(-1)
        res.append((tokens * mask).sum(1).cpu().numpy())
    return np.concatenate(res).astype(np.float64)


def per_prompt(values: np.ndarray, k: int) -> np.ndarray:
    """Mean over each prompt's k samples (rows prompt-major)."""
    return np.asarray(values, dtype=np.float64).reshape(-1, k).mean(1)


def sample_scores(sample: dict, reward_model, tok, batch_size: int = 16) -> np.ndarray:
    """The reward model's score of each sampled answer under the rule, on its token ids as sampled."""
    return ids_scores(reward_model, tok, sample["prompt_ids"], sample["answer_ids"], batch_size)


def answer_side(params: Params, policy, reward_model, tok, prompts: list[str]) -> dict:
    """One policy's answers to the held-out prompts: `rl.judge_samples` answers sampled per prompt at the RL stage's
    temperature (seeded by the evaluation seed alone, so that before and after draw common random numbers) with the
    reward model's scores (per answer, and their mean per prompt), and the greedy answer with its score and length."""
    max_new, bs, k = response_length(params), params.evaluation.batch_size, params.rl.judge_samples
    gen_bs = params.evaluation.generate_batch_size  # generation in larger batches: measured 1.3x faster than 16
    seed, temp = seed_for(params.eval_seed, "rl-judge"), sample_temperature(params)
    sample = sample_answers(policy, tok, prompts, max_new, k, seed, gen_bs, temp)
    scores = sample_scores(sample, reward_model, tok, bs)
    side = {"sample": sample, "scores": scores, "sampled": per_prompt(scores, k)}
    if params.rl.judge_greedy:
        _, side["greedy"], side["greedy_length"] = greedy_rewards(
            policy, reward_model, tok, prompts, max_new, bs, gen_bs
        )
    return side


def length_matched_gain(reward_gain: np.ndarray, length_gain: np.ndarray) -> dict:
    """The reward gain at an unchanged answer length: the intercept of the per-prompt least-squares line of the
    reward change on the length change (`scipy.stats.linregress`), its 95 % t interval (n - 2 df) and p."""
    from scipy import stats as st

    x, y = np.asarray(length_gain, float), np.asarray(reward_gain, float)
    if len(x) < 3 or np.ptp(x) == 0:
        est = float(np.mean(y)) if len(y) else float("nan")
        return {"gain": est, "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "slope": float("nan")}
    r = st.linregress(x, y)
    q = st.t.ppf(0.975, len(x) - 2)
    se = r.intercept_stderr
    p = float(2 * st.t.sf(abs(r.intercept / se), len(x) - 2)) if se > 0 else float("nan")
    return {
        "gain": float(r.intercept),
        "lo": r.intercept - q * se,
        "hi": r.intercept + q * se,
        "p": p,
        "slope": r.slope,
    }


def judge_policies(
    params: Params, before, after, reward_model, tok, prompts: list[str], label: str, before_side: dict | None = None
) -> dict:
    """Did RL raise the reward on held-out prompts? As flat metrics `<label>_...`:

    * `reward_gain`: the policy's expected reward (the RL objective: the mean reward of `rl.judge_samples` answers
      sampled per prompt at the RL temperature), after - before, paired over prompts, with its interval;
    * `greedy_gain`: the same for the greedy answer (what the evaluation reads), with its interval (`rl.judge_greedy`);
    * `matched_gain`: the sampled gain at unchanged length (`length_matched_gain`), with its interval;
    * `kl`: KL(after || before), estimated on the sampled answers, with its interval;
    * the answers' mean length in tokens, sampled and greedy, and the share of sampled answers that finished, before
      and after.

    `before_side`: the SFT model's `answer_side`, when the caller judges several policies against it (the real run
    and the controls); computed here otherwise."""
    b = before_side or answer_side(params, before, reward_model, tok, prompts)
    a = answer_side(params, after, reward_model, tok, prompts)
    s1, k = a["sample"], params.rl.judge_samples
    kl = per_prompt(s1["logprobs"] - answer_logprobs(before, s1), k)  # the policy's own side from its sampling
    out = {f"{label}_prompts": len(prompts), f"{label}_samples_per_prompt": k}
    for key, name in (("reward", "sampled"), ("greedy", "greedy")):
        if name not in a:
            continue
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
    lb, la = per_prompt(b["sample"]["lengths"], k), per_prompt(s1["lengths"], k)
    m = length_matched_gain(a["sampled"] - b["sampled"], la - lb)
    out.update({f"{label}_matched_gain{s}": m[x] for s, x in (("", "gain"), ("_lo", "lo"), ("_hi", "hi"), ("_p", "p"))})
    out[f"{label}_reward_per_token"] = m["slope"]
    # per prompt, for a recipe-level reading over training seeds x prompts (`analysis.rl_gain`)
    out[f"{label}_per_prompt"] = {"before": b["sampled"].round(6).tolist(), "after": a["sampled"].round(6).tolist()}
    kl_mean, kl_lo, kl_hi = interval(kl, seed=seed_for(params.eval_seed, "kl", label))
    out.update({f"{label}_kl": kl_mean, f"{label}_kl_lo": kl_lo, f"{label}_kl_hi": kl_hi})
    out.update(
        {
            f"{label}_length_before": float(np.mean(b["sample"]["lengths"])),
            f"{label}_length_after": float(np.mean(s1["lengths"])),
            f"{label}_finished_before": float(np.mean(b["sample"]["finished"])),
            f"{label}_finished_after": float(np.mean(s1["finished"])),
        }
    )
    if "greedy_length" in a:
        out[f"{label}_greedy_length_before"] = float(np.mean(b["greedy_length"]))
        out[f"{label}_greedy_length_after"] = float(np.mean(a["greedy_length"]))
    return out


def heldout_curve(
    policy_fn,
    reward_model,
    tok,
    prompts: list[str],
    max_new_tokens: int,
    log_fn=None,
    batch_size=16,
    k=4,
    seed=0,
    temperature=1.0,
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
            sample = sample_answers(policy_fn(), tok, prompts, max_new_tokens, k, seed, batch_size, temperature)
            r = sample_scores(sample, reward_model, tok, batch_size)
            point = {
                "heldout/reward": float(np.mean(r)),
                "heldout/length": float(np.mean(sample["lengths"])),
                "heldout/finished": float(np.mean(sample["finished"])),
            }
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
