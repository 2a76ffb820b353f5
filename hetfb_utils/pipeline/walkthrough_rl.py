"""Worked examples of notebook 04 (the reward model, DPO's margin, one PPO rollout, one RLOO group), each computed
with the pieces the trainers use; `walkthrough` re-exports them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.params import Params


def reward_example(params: Params, variant: str) -> dict:
    """The first held-out pair the variant's reward model is judged on (`training.judged_pairs`: the run's
    held-out pool, else the variant's own held-out slice), formatted as the reward model reads it."""
    from datasets import Dataset

    from ..models.loading import base_model_path, load_tokenizer
    from ..selection import load_variant
    from ..training.reward import judged_pairs, reward_config, reward_split
    from ..training.stages import preference_rows, stage_dir

    pool = judged_pairs(params, reward_split(params, load_variant(params, variant))[1]).head(1)
    tok = load_tokenizer(base_model_path(params))
    max_len = reward_config(params, stage_dir(params, variant, "reward") / "checkpoints").max_length or 512
    row = preference_rows(Dataset.from_pandas(pool, preserve_index=False), tok, params, max_len)[0]
    return {**row, "source": pool.iloc[0]["source"]}


def dpo_margin(params: Params, variant: str, pair: dict) -> dict:
    """DPO's implicit reward of each reply, beta (log pi(y|x) - log pi_ref(y|x)) with pi the DPO policy and
    pi_ref the SFT model, and their margin (chosen - rejected): what DPO's loss pushes up, on one pair."""
    from ..common.configs import stage_config
    from ..models.loading import base_model_path, load_causal_lm, load_tokenizer
    from ..models.scoring import score_continuations
    from ..training.stages import stage_dir

    beta = stage_config(params, "dpo", Path(tempfile.gettempdir()) / "hetfb-walkthrough").beta
    tok = load_tokenizer(base_model_path(params))
    sft = stage_dir(params, variant, "sft")
    jobs = [(pair["prompt"], pair["chosen"]), (pair["prompt"], pair["rejected"])]
    policy = score_continuations(load_causal_lm(params, [sft, stage_dir(params, variant, "dpo")]), tok, jobs)
    reference = score_continuations(load_causal_lm(params, [sft]), tok, jobs)
    reward = beta * (policy - reference)
    return {
        "beta": beta,
        "log pi": dict(zip(("chosen", "rejected"), policy)),
        "log pi_ref": dict(zip(("chosen", "rejected"), reference)),
        "implicit reward": dict(zip(("chosen", "rejected"), reward)),
        "margin": float(reward[0] - reward[1]),
    }


def score_pair(reward_model, tok, pair: dict) -> dict:
    """The reward model's scalar for prompt+chosen and prompt+rejected (the pair is right when chosen wins)."""
    from ..training.reward_rule import reward_scores

    c, r = reward_scores(reward_model, tok, [pair["prompt"] + pair["chosen"], pair["prompt"] + pair["rejected"]])
    return {"chosen": float(c), "rejected": float(r), "margin": float(c - r), "right": bool(c > r)}


def ppo_rollout(params: Params, variant: str, prompt: str, seed: int | None = None) -> dict:
    """One PPO rollout as `trl.experimental.ppo.PPOTrainer` computes it, with TRL's own helpers: the
    trained policy samples a response (temperature `args.temperature`), the SFT model (the reference)
    and the policy give each response token's log-prob, the reward model scores the response (cut at
    the stop token). Returns the tensors; the notebook forms the KL penalty and the objective."""
    import torch
    from transformers import GenerationConfig
    from trl.experimental.ppo.ppo_trainer import batch_generation, forward, truncate_response
    from trl.experimental.utils import get_reward
    from trl.trainer.utils import selective_log_softmax

    from ..common.configs import stage_config
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_tokenizer
    from ..training.reward import load_variant_reward
    from ..training.rl_rewards import RewardSpec, ppo_reward
    from ..training.stages import stage_dir

    args = stage_config(params, "ppo", Path(tempfile.gettempdir()) / "hetfb-walkthrough")  # read, never written
    tok = load_tokenizer(base_model_path(params))
    sft_dir = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, adapters=[sft_dir, stage_dir(params, variant, "ppo")])
    reference = load_causal_lm(params, adapters=[sft_dir])
    reward_model = load_variant_reward(params, variant)
    ids = tok(format_prompt(tok, prompt, "[]", params), add_special_tokens=False).input_ids
    query = torch.tensor([ids[-params.rl.ppo.max_prompt_length :]])
    gen = GenerationConfig(
        max_new_tokens=args.response_length, temperature=args.temperature + 1e-7, top_k=0, top_p=1.0, do_sample=True
    )
    torch.manual_seed(params.training_seed if seed is None else seed)
    pad, n = tok.pad_token_id, query.shape[1]
    with torch.no_grad():
        query_response, logits = batch_generation(policy, query, 1, pad, gen)
        response = query_response[:, n:]
        logprob = selective_log_softmax(logits, response)[0]
        ref_logits = forward(reference, query_response, pad).logits[:, n - 1 : -1] / (args.temperature + 1e-7)
        ref_logprob = selective_log_softmax(ref_logits, response)[0]
        stop = tok.eos_token_id
        cut = truncate_response(stop, pad, response) if stop is not None else response
        # TRL's own reading of the reward the PPO stage hands it: the kit's rule (`training.reward_rule`)
        _, score, _ = get_reward(
            ppo_reward(RewardSpec("real", reward_model), tok, n), torch.cat((query, cut), 1), pad, n
        )
    keep = int((cut[0] != pad).sum())  # the tokens TRL counts: up to the first pad token (after the stop token)
    return {
        "prompt": tok.decode(query[0]),
        "response": tok.decode(cut[0, :keep], skip_special_tokens=True),
        "tokens": [tok.decode([t]) for t in response[0, :keep]],
        "logprob": logprob[:keep].double().numpy(),
        "ref_logprob": ref_logprob[:keep].double().numpy(),
        "score": float(score[0]),
        "finished": bool(stop is not None and (cut[0] == stop).any()),
        "kl_coef": float(args.kl_coef),
        "kl_estimator": args.kl_estimator,
    }


def rloo_group(params: Params, variant: str, prompt: str, seed: int | None = None) -> pd.DataFrame:
    """One RLOO group as `trl.RLOOTrainer` forms it: k answers sampled from the trained policy for one prompt
    (k = `num_generations`), each scored by the reward model; each answer's baseline is the mean reward of the
    other k - 1, its advantage its reward minus that baseline (what the policy gradient weights it by)."""
    import torch

    from ..common.configs import stage_config
    from ..models.loading import base_model_path, format_prompt, load_causal_lm, load_tokenizer
    from ..training.reward import load_variant_reward
    from ..training.rl_rewards import RewardSpec, rloo_reward
    from ..training.stages import stage_dir

    args = stage_config(params, "rloo", Path(tempfile.gettempdir()) / "hetfb-walkthrough")
    tok = load_tokenizer(base_model_path(params))
    sft = stage_dir(params, variant, "sft")
    policy = load_causal_lm(params, [sft, stage_dir(params, variant, "rloo")])
    reward_model = load_variant_reward(params, variant)
    text = format_prompt(tok, prompt, "[]", params)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    torch.manual_seed(params.training_seed if seed is None else seed)
    with torch.no_grad():
        gen = policy.generate(
            ids.repeat(args.num_generations, 1),
            do_sample=True,
            temperature=args.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=args.max_completion_length,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    resp = gen[:, ids.shape[1] :]
    answers = tok.batch_decode(resp, skip_special_tokens=True)
    done = (resp == tok.eos_token_id).int()
    answer_ids = [
        row[(done[i].cumsum(0) - done[i] == 0) & (row != tok.pad_token_id)].tolist() for i, row in enumerate(resp)
    ]
    # the reward RLOO's trainer is handed (`training.rl_rewards.rloo_reward`: the kit's rule on the sampled ids)
    r = np.asarray(rloo_reward(RewardSpec("real", reward_model), tok)([text] * len(answers), answers, answer_ids))
    baseline = (r.sum() - r) / (len(r) - 1)
    return pd.DataFrame(
        {"answer": answers, "reward": r, "baseline (others' mean)": baseline, "advantage": r - baseline}
    )
