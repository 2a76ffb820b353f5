"""How fast this machine runs the base model: the forward FLOP rate every run records with its timings (the
runner's machine facts) and `make bench` reports beside its training steps."""

from __future__ import annotations

from ..common.params import Params
from .loading import base_model_path, load_causal_lm, load_tokenizer


def forward_flop_rate(params: Params, batch: int = 4, seq: int = 128, reps: int = 3) -> dict:
    """The base model's forward FLOP rate on this machine (2N FLOPs per token, N the matrix parameters), at a
    fixed batch shape: what a run's timings are to be read against."""
    import time

    import torch

    path = base_model_path(params)
    model, tok = load_causal_lm(params, path=path), load_tokenizer(path)
    n = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    ids = torch.randint(100, len(tok) - 1, (batch, seq), generator=torch.Generator().manual_seed(0)).to(model.device)
    with torch.no_grad():
        model(input_ids=ids)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(input_ids=ids)
        t_fwd = (time.perf_counter() - t0) / reps
    return {
        "params_matmul": n,
        "batch": batch,
        "seq": seq,
        "forward_gflops": round(2 * n * batch * seq / t_fwd / 1e9, 1),
    }
