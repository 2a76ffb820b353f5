"""Several processes, one stage: who writes, and waiting for each other.

Under ``accelerate launch`` (torchrun) every process runs the same training stage on its shard of
each batch; only the main process (rank 0) touches the files a stage leaves (checkpoint
directory reset, adapters, manifests, markers). On a machine without CUDA the processes talk over
gloo: the stage configs set ``use_cpu`` there, and `init` joins the process group before any file
is touched. In a single process every helper here is a no-op.
"""

from __future__ import annotations

import contextlib
import os


def world_size() -> int:
    """How many processes train together (1 without `accelerate launch`)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without `accelerate launch`)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Is this the process that writes files (rank 0)?"""
    return rank() == 0


def init() -> None:
    """Join the process group when launched with several processes (gloo without CUDA)."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Wait for every process (a no-op in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (it builds a cache, resets a directory), the others
    after it: they find its result."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()
