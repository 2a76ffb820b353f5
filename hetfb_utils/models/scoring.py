"""The scoring engine: batched log-likelihoods and greedy generation on shared prefix caches.

Every likelihood metric of the kit goes through `score_continuations`; every greedy answer through
`generate_greedy` (or the answers `score_continuations` generates on its own prompt cache). This
module imports nothing from the kit's stages: the benchmarks (`hetfb_utils.benchmarks`), the PPO
probe and the bench take it as their engine.
"""

from __future__ import annotations

import numpy as np


def _wide(logits):
    """Logits in float32 for the log-softmax (bf16 / fp16 models), float64 kept as it is."""
    import torch

    return logits if logits.dtype == torch.float64 else logits.float()


def _ids(tok, text: str, special: bool) -> list[int]:
    return tok(text, add_special_tokens=special).input_ids


def pad_batch(seqs: list[list[int]], pad: int, left: bool):
    """(input_ids, attention_mask) of token lists padded to the longest, on the left or right."""
    import torch

    L = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for j, x in enumerate(seqs):
        sl = slice(L - len(x), L) if left else slice(0, len(x))
        ids[j, sl] = torch.tensor(x, dtype=torch.long)
        mask[j, sl] = 1
    return ids, mask


def _lcp(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def shared_prefix(seqs: list[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving each at least one token of its own
    (a chat model's system turn and user header: ~40% of a WinoBias prompt for SmolLM2)."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        n = min(n, _lcp(s, seqs[0]))
    return max(n, 0)


class PrefixCache:
    """The KV cache of a shared token prefix, computed once and copied out per batch; the rows'
    own tokens follow it as `_layout` arranges them."""

    def __init__(self, model, ids: list[int]):
        import torch

        self.ids, self.n, self.cache = list(ids), len(ids), None
        if ids:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True, logits_to_keep=1)
            self.cache = out.past_key_values

    def head(self, rows: int, device):
        """The prefix token ids repeated for `rows` rows: [rows, n]."""
        import torch

        return torch.tensor(self.ids, dtype=torch.long, device=device).view(1, self.n).expand(rows, -1)

    def expand(self, rows: int, device):
        """(a copy of the cache for `rows` rows or None, the all-ones mask of the prefix)."""
        import copy

        import torch

        cache = None
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(rows)
        return cache, torch.ones((rows, self.n), dtype=torch.long, device=device)


def prompt_families(
    seqs: dict[str, list[int]], start: int, max_size: int = 8, min_share: int = 4
) -> list[tuple[int, list[str]]]:
    """Group prompts that share a long token prefix beyond the first `start` tokens (WinoBias pro
    and anti prompts share their sentence up to the pronoun): [(family prefix length, members)].
    In token order, a prompt joins its neighbour's family while the family keeps >= 3/4 of its
    shared prefix (>= `min_share` tokens for a pair); every member keeps at least one own token.
    A prompt with no family is a family of one whose prefix is all but its last token."""
    fams: list[tuple[int, list[str]]] = []
    for p in sorted(seqs, key=lambda q: seqs[q]):
        s = seqs[p]
        if fams and len(fams[-1][1]) < max_size:
            L, members = fams[-1]
            k = min(_lcp(s, seqs[members[-1]]), L, len(s) - 1)
            need = min_share if len(members) == 1 else 0.75 * (L - start)
            if k - start >= max(need, min_share):
                fams[-1] = (k, members + [p])
                continue
        fams.append((len(s) - 1, [p]))
    return fams


def _layout(mask, seqs: list[list[int]], pad: int, device):
    """Left-padded `seqs` to follow cached tokens (`mask` covers them, one row each): the pads sit
    between the cached tokens and each row's own, masked out, and every real token gets its true
    position. Returns (ids of `seqs`, mask of cached + new tokens, position ids of `seqs`)."""
    import torch

    ids, smask = pad_batch(seqs, pad, left=True)
    ids, smask = ids.to(device), smask.to(device)
    pos = (mask.sum(-1, keepdim=True) + smask.cumsum(-1) - 1).masked_fill(smask == 0, 0)
    return ids, torch.cat([mask, smask], dim=1), pos


def _extend(model, cache, mask, seqs: list[list[int]], pad: int):
    """Run `seqs` on top of `cache` as `_layout` arranges them. Returns (output with the logits of
    the last position, ids, full mask)."""
    import torch

    ids, full, pos = _layout(mask, seqs, pad, model.device)
    with torch.no_grad():
        res = model(
            input_ids=ids,
            attention_mask=full,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return res, ids, full


def _chunks(p_ids: dict[str, list[int]], start: int, batch_size: int) -> list[list[tuple[int, list[str]]]]:
    """The prompt families (`prompt_families` beyond the shared head of `start` tokens) in batches of at most
    `batch_size` member prompts, similar tail lengths together (the tails are most of the tokens: least padding)."""
    fams = prompt_families(p_ids, start)
    fams.sort(key=lambda f: (-max(len(p_ids[m]) - f[0] for m in f[1]), -f[0]))
    chunks, cur = [], []
    for f in fams:
        if cur and sum(len(x[1]) for x in cur) + len(f[1]) > batch_size:
            chunks.append(cur)
            cur = []
        cur.append(f)
    if cur:
        chunks.append(cur)
    return chunks


def _family_prefixes(model, shared: PrefixCache, chunk, p_ids: dict[str, list[int]], pad: int):
    """Level 1: each family's shared prefix, on the head's cache. Returns (cache, mask, the families' ids)."""
    import torch

    nf, dev = len(chunk), model.device
    cache, mask = shared.expand(nf, dev)
    fam_seqs = [p_ids[m[0]][shared.n : L] for L, m in chunk]
    if max(len(s) for s in fam_seqs):
        res, fam_ids, mask = _extend(model, cache, mask, fam_seqs, pad)
        return res.past_key_values, mask, fam_ids
    return cache, mask, torch.zeros((nf, 0), dtype=torch.long, device=dev)


def _member_tails(model, cache, mask, chunk, p_ids: dict[str, list[int]], pad: int):
    """Level 2: each member prompt's own tail on its family's cache, only the last position's logits computed.
    Returns (cache, mask, own ids, member rows into the families, prompt names, first-token log-probs)."""
    import torch

    members = [(j, L, p) for j, (L, ms) in enumerate(chunk) for p in ms]
    rows = torch.tensor([j for j, _, _ in members], device=model.device)
    if cache is not None:
        cache.reorder_cache(rows)
    res, own_ids, mask = _extend(model, cache, mask[rows], [p_ids[p][L:] for _, L, p in members], pad)
    first = torch.log_softmax(_wide(res.logits[:, -1]), dim=-1)
    return res.past_key_values, mask, own_ids, rows, [p for _, _, p in members], first


def _continuation_tokens(model, cache, mask, rest: list, batch_size: int, pad: int, out: np.ndarray) -> None:
    """Level 3: the continuation tokens after the first, of every (row, pair index, continuation) in `rest`, in
    batches on copies of the prompts' cache; their log-probabilities are added to `out`."""
    import copy

    import torch

    dev = model.device
    rest.sort(key=lambda x: -len(x[2]))
    for r0 in range(0, len(rest), batch_size):  # continuations in batches too (WinoGrande: one prompt)
        part = rest[r0 : r0 + batch_size]
        sel = torch.tensor([j for j, _, _ in part], device=dev)
        sub = copy.deepcopy(cache) if len(rest) > batch_size else cache
        sub.reorder_cache(sel)
        cin, cmask = pad_batch([c[:-1] for _, _, c in part], pad, left=False)
        cpos = mask[sel].sum(-1, keepdim=True) + torch.arange(cin.shape[1], device=dev).unsqueeze(0)
        with torch.no_grad():
            logits = _wide(
                model(
                    input_ids=cin.to(dev),
                    attention_mask=torch.cat([mask[sel], cmask.to(dev)], dim=1),
                    past_key_values=sub,
                    position_ids=cpos,
                    use_cache=True,
                ).logits
            )
        tgt, _ = pad_batch([c[1:] for _, _, c in part], 0, left=False)
        picked = logits.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        for r, (_, i, c) in enumerate(part):
            out[i] += picked[r, : len(c) - 1].sum().item()


def score_continuations(
    model,
    tok,
    pairs: list[tuple[str, str]],
    batch_size: int = 16,
    return_counts: bool = False,
    next_for: list[str] | None = None,
    answer: tuple[int, set[str] | None] | None = None,
):
    """Sum of log p(continuation tokens | prompt) for many (prompt, continuation) pairs.

    The prompt is tokenized as the model expects (special tokens included); the continuation
    without special tokens (no stray BOS inside it). Every prompt token runs once per distinct
    prefix, as in a prefix tree of three levels: the head all prompts share (a chat template's
    system turn) once; then, in batches, the prefix each family of prompts shares
    (`prompt_families`, `_family_prefixes`); then each prompt's own tail on its family's cache, with only the
    last position's logits computed (`_member_tails`). Pairs are grouped by prompt: the first continuation
    token is read off that position, the remaining continuation tokens of all its continuations run in one
    more batched pass on the copied cache (`_continuation_tokens`). Every real token sits at its true
    position, so a row scores exactly as it would alone.

    `next_for`: prompts whose whole next-token log-distribution is also returned ([N, vocab],
    taken from the same forward pass). `answer=(max_new_tokens, stop_at)`: also a greedy answer
    to each of them, generated on the same prompt cache (as `generate_greedy` would give).
    Returns scores[, counts][, next-token log-probs][, answers]."""
    # long: one walk down the three-level prefix tree; each level is a helper, the rest is one result's bookkeeping
    import copy
    from collections import defaultdict

    import torch

    groups: dict[str, list[tuple[int, list[int]]]] = defaultdict(list)
    for i, (p, c) in enumerate(pairs):
        groups[p].append((i, _ids(tok, c, False)))
    for p in next_for or []:
        groups.setdefault(p, [])
    nexts: dict[str, object] = {}
    want = set(next_for or [])
    answers: dict[str, str] = {}
    p_ids = {p: _ids(tok, p, True) for p in groups}
    out = np.zeros(len(pairs), dtype=np.float64)
    counts = np.zeros(len(pairs), dtype=np.int64)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = model.device
    heads = list(p_ids.values())
    shared = PrefixCache(model, heads[0][: shared_prefix(heads)] if heads else [])
    for chunk in _chunks(p_ids, shared.n, batch_size):
        cache, mask, fam_ids = _family_prefixes(model, shared, chunk, p_ids, pad)
        cache, mask, own_ids, rows, names, first = _member_tails(model, cache, mask, chunk, p_ids, pad)
        rest = []  # (row, pair index, continuation) with more than one token
        for j, p in enumerate(names):
            if p in want:
                nexts[p] = first[j].cpu()
            for i, c in groups[p]:
                counts[i] = len(c)
                if c:
                    out[i] = first[j, c[0]].item()
                if len(c) > 1:
                    rest.append((j, i, c))
        if answer is not None and want.intersection(names):
            full = torch.cat([shared.head(len(names), dev), fam_ids[rows], own_ids], dim=1)
            gen_cache = copy.deepcopy(cache)
            gen_cache.crop(-1)  # generate re-reads the last prompt token only
            texts = _greedy(model, tok, full, mask, gen_cache, *answer)
            answers.update((p, t) for p, t in zip(names, texts) if p in want)
        _continuation_tokens(model, cache, mask, rest, batch_size, pad, out)
    result = (out, counts) if return_counts else (out,)
    if next_for is not None:
        result += (torch.stack([nexts[p] for p in next_for]) if next_for else torch.zeros(0),)
        if answer is not None:
            result += ([answers[p] for p in next_for],)
    return result if len(result) > 1 else result[0]


def next_token_logprobs(model, tok, prompts: list[str], batch_size: int = 16):
    """Log-softmax of the next-token distribution after each prompt: tensor [N, vocab]."""
    import torch

    enc = [_ids(tok, p, True) for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = [None] * len(enc)
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, mask = pad_batch([enc[i] for i in idx], pad, left=False)
        with torch.no_grad():
            logits = _wide(model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits)
        for j, i in enumerate(idx):
            rows[i] = torch.log_softmax(logits[j, len(enc[i]) - 1], dim=-1).cpu()
    return torch.stack(rows) if rows else torch.zeros(0)


def reference_logprob(model, tok, prompt: str, continuation: str) -> float:
    """The authors' approach (for the benchmark): one full forward pass per continuation token,
    batch size 1, no cache. Same tokenization as the batched scorer."""
    import torch

    ids = torch.tensor([_ids(tok, prompt, True)], device=model.device)
    total = 0.0
    for t in _ids(tok, continuation, False):
        with torch.no_grad():
            logits = _wide(model(input_ids=ids).logits[0, -1])
        total += torch.log_softmax(logits, dim=-1)[t].item()
        ids = torch.cat([ids, torch.tensor([[t]], device=model.device)], dim=1)
    return total


def generate_greedy(
    model,
    tok,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    stop_at: set[str] | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy answers in batches laid out as [shared prefix | left-padded prompt suffixes] (the
    prefix KV cache computed once, see `PrefixCache`); a row stops at EOS or at the first character
    of `stop_at` (its text is cut there); the batch ends when every row has stopped."""
    if not prompts:
        return []
    import torch
    from tqdm.auto import tqdm

    outs: list[str] = [""] * len(prompts)
    enc = [_ids(tok, p, True) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
    shared = PrefixCache(model, enc[0][: shared_prefix(enc)] if enc else [])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for s in tqdm(range(0, len(order), batch_size), desc="generating", disable=not progress):
        idx = order[s : s + batch_size]
        cache, mask = shared.expand(len(idx), model.device)
        ids, mask, _ = _layout(mask, [enc[i][shared.n :] for i in idx], pad, model.device)
        ids = torch.cat([shared.head(len(idx), model.device), ids], dim=1)
        for i, text in zip(idx, _greedy(model, tok, ids, mask, cache, max_new_tokens, stop_at)):
            outs[i] = text
    return outs


def _greedy(model, tok, ids, mask, cache, max_new_tokens: int, stop_at: set[str] | None) -> list[str]:
    """HF greedy `generate` for one batch (`cache`: KV of all but the uncached tail of `ids`, or
    None), with a per-row stop at the first character of `stop_at`."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    start = ids.shape[1]

    class StopChars(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            texts = tok.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor([has_stop(t, stop_at) for t in texts], device=input_ids.device)

    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.no_grad():
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            past_key_values=cache,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
            stopping_criteria=StoppingCriteriaList([StopChars()]) if stop_at else None,
        )
    texts = tok.batch_decode(gen[:, start:], skip_special_tokens=True)
    return [cut_at_stop(t, stop_at) if stop_at else t.strip() for t in texts]


_LEAD = " \t\n\"'-*:•"


def cut_at_stop(text: str, stop_at: set[str]) -> str:
    """The answer up to the first stop character after it starts (leading whitespace, quotes,
    list bullets and colons are skipped: '\n- "the lawyer." ...' -> 'the lawyer')."""
    body = text.lstrip(_LEAD)
    cut = [body.index(ch) for ch in stop_at if ch in body]
    return (body[: min(cut)] if cut else body).strip()


def has_stop(text: str, stop_at: set[str]) -> bool:
    """Does the answer (leading quotes and bullets skipped) contain a stop character?"""
    body = text.lstrip(_LEAD)
    return any(ch in body for ch in stop_at)
