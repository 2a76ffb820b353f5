"""The one reward rule: how a reward model scores an answer, wherever an answer is scored.

A reward model (a sequence-classification model: a linear score head on the backbone) is fitted on complete replies,
each closed by the end-of-sequence token, and reads its score at that token. An RL policy's answer is often cut off
at the length limit before it ends: TRL's `PPOTrainer` would read the score at the answer's last token, a position the
head was never fitted at (measured on the quickstart: the rank correlation between that score and the score with the
end token was -0.01 on cut-off answers, and it rewarded stopping early), while `RewardTrainer` and the judge closed the
text. The kit's rule, for every scorer:

    the score of (prompt, answer) is the head's value at an end-of-sequence token that closes the answer:
    the answer's own when it finished, one appended when it was cut off.

`docs/measurements.md` has why (a cut-off answer closed this way ranks like its finished continuation; read at its
last token it does not). One function, `closed_scores`, implements it on token ids; everything else calls it:

* `reward_scores` (texts: the head's held-out judgement, RLOO's reward function, the RL judge, the evaluation);
* `closed_features` (the backbone's hidden state at that token: what the fitted head is fitted on);
* `function_reward`, the module TRL's PPO reads its reward from (`trl.experimental.utils.get_reward`: the backbone's
  hidden states, the score head at the last non-pad token), which hands PPO `closed_scores` of the rollout; the same
  wrapper carries the length-only control reward (`answer_length_reward`).

Whether an answer finished is reported beside its score (the RL judge's finish rate), not hidden in it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def _closed(ids, mask, eos: int, pad: int):
    """(ids, mask, position ids, read index): each row's real tokens (`mask`) closed by `eos` where its last real
    token is not already `eos` (one column appended so a full row has room), pads set to `pad`."""
    import torch

    mask = mask.long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    rows = torch.arange(ids.shape[0], device=ids.device)
    width = ids.shape[1]
    last = (torch.arange(width, device=ids.device) * mask).argmax(1)  # the last real token (left or right pads)
    open_ = ids[rows, last] != eos
    ids = torch.cat([ids, torch.full_like(ids[:, :1], pad)], 1)
    mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
    read = torch.where(open_, last + 1, last)
    ids[rows[open_], read[open_]] = eos
    mask[rows[open_], read[open_]] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions, read


def _inner(model):
    """The transformers model inside a PEFT wrapper (its backbone and score head carry the adapter's layers)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _backbone_at_close(model, ids, mask, eos: int, pad: int):
    """The backbone's last hidden state at each row's closing end token: [rows, hidden]."""
    import torch

    ids, mask, pos, read = _closed(ids, mask, eos, pad)
    inner = _inner(model)
    backbone = getattr(inner, inner.base_model_prefix)
    h = backbone(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
    return h[torch.arange(len(ids), device=ids.device), read]


def closed_scores(model, ids, mask, eos: int, pad: int):
    """THE rule: the reward model's score of each row (prompt + answer token ids, `mask` its real tokens, pads on
    either side) at the end token that closes it (its own, or one appended). A float tensor [rows]."""
    return _inner(model).score(_backbone_at_close(model, ids, mask, eos, pad)).squeeze(-1).float()


def closed_features(model, ids, mask, eos: int, pad: int):
    """The hidden states the score head reads under the rule (`closed_scores` is `score` of these)."""
    return _backbone_at_close(model, ids, mask, eos, pad).float()


def _by_length(tok, texts: list[str], batch_size: int, max_length: int, fn, device) -> list:
    """`fn(ids, mask)` (one row per text) over batches of similar length (right padding; a text longer than
    `max_length` tokens keeps its end, where the answer and its end token are), in input order."""
    import torch

    out: list = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    side, trunc = tok.padding_side, tok.truncation_side
    tok.padding_side, tok.truncation_side = "right", "left"
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tok(
                [texts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
                add_special_tokens=False,
            ).to(device)
            with torch.no_grad():
                for i, row in zip(idx, fn(enc["input_ids"], enc["attention_mask"]).cpu().numpy()):
                    out[i] = row
    finally:
        tok.padding_side, tok.truncation_side = side, trunc
    return out


def reward_scores(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """The reward of each text (prompt + answer) under the rule (`closed_scores`), batched by length."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    rows = _by_length(
        tok, texts, batch_size, max_length, lambda i, m: closed_scores(model, i, m, eos, pad), model.device
    )
    return np.asarray(rows, dtype=np.float64)


def last_token_features(model, tok, texts: list[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """The features the score head is fitted on: `closed_features` of each text."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    rows = _by_length(
        tok, texts, batch_size, max_length, lambda i, m: closed_features(model, i, m, eos, pad), model.device
    )
    return np.stack(rows)


def ids_scores(model, tok, prompt_ids: list[list[int]], answer_ids: list[list[int]], batch_size: int = 16):
    """The rule on token ids as a policy produced them (no re-tokenisation): prompt + answer of each row."""
    import torch

    from ..models.scoring import pad_batch

    out = []
    for s in range(0, len(answer_ids), batch_size):
        seqs = [p + a for p, a in zip(prompt_ids[s : s + batch_size], answer_ids[s : s + batch_size])]
        ids, mask = pad_batch(seqs, tok.pad_token_id, left=False)
        with torch.no_grad():
            out.append(
                closed_scores(model, ids.to(model.device), mask.to(model.device), tok.eos_token_id, tok.pad_token_id)
            )
    return np.concatenate([o.cpu().numpy() for o in out]).astype(np.float64) if out else np.zeros(0)


# --------------------------------------------------------------------------- the reward TRL's PPO reads
def answer_length_reward(context_length: int, scale: float = 1.0):
    """The length-only control's reward: the answer's tokens (its real tokens after the first `context_length`
    columns, the prompt's), times `scale`. For `function_reward`."""

    def fn(ids, mask):
        return mask[:, context_length:].sum(1).float() * scale

    return fn


class _Scores:
    """What `function_reward`'s backbone hands TRL: hidden states whose single feature is each row's reward."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, input_ids, attention_mask, **_):
        import torch

        with torch.no_grad():
            r = self.fn(input_ids, attention_mask).float()
        h = r.view(-1, 1, 1).expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(hidden_states=(h,), last_hidden_state=h)


def function_reward(fn):
    """A module TRL's PPO takes as its `reward_model`: its `get_reward` calls the backbone (here: `fn(ids, mask)`,
    one reward per row, spread over every position) and reads the score head (the identity) at the answer's last
    token, so PPO's score of a rollout is `fn` of it, whatever position TRL reads. With `fn` = `closed_scores` of a
    reward model it is the kit's rule; with `answer_length_reward` the length-only control."""
    import torch

    class _FunctionReward(torch.nn.Module):
        base_model_prefix = "scorer"

        def __init__(self):
            super().__init__()
            self.scorer = _Scores(fn)
            self.score = torch.nn.Identity()

    return _FunctionReward()


def rule_reward(model, tok):
    """`function_reward` of a reward model under the rule: what PPO reads is `closed_scores`."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    reward = function_reward(lambda ids, mask: closed_scores(model, ids, mask, eos, pad))
    reward.model = model  # registered: PPO moves it with the wrapper, `disable_dropout` reaches it
    return reward
