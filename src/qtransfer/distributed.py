"""Runs across processes and machines with torch.distributed, as launched by torchrun."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from qtransfer.errors import InputError

T = TypeVar("T")

# How long a collective waits for a rank that died or hangs before it raises instead of waiting forever.
DEFAULT_TIMEOUT_S = 600


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and prints: rank 0, or the only process."""
    return rank() == 0


def local_device(requested: torch.device) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK when CUDA is asked for under torchrun, else `requested`."""
    if is_distributed() and requested.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def timeout() -> timedelta:
    """Collective timeout: $QTRANSFER_DIST_TIMEOUT seconds, default 600."""
    return timedelta(seconds=float(os.environ.get("QTRANSFER_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))


def init(backend: str | None = None) -> None:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timeout())


@contextmanager
def session(backend: str | None = None) -> Iterator[None]:
    """Inside: the process group when launched by torchrun, nothing otherwise; destroyed on the way out."""
    if not launched() or dist.is_initialized():
        yield
        return
    init(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op when not distributed)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of `values` over ranks (float64, so counts stay exact)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def share(items: Sequence[T]) -> list[T]:
    """This rank's items of a list every rank holds alike: items rank, rank + world, rank + 2·world, ..."""
    return list(items[rank() :: world_size()])


def check_batch(batch_size: int) -> None:
    """Refuse a global batch that the ranks cannot split evenly, naming both numbers and the fix."""
    world = world_size()
    if batch_size % world:
        raise InputError(
            f"--batch-size {batch_size} is the global batch and must divide evenly among the {world} processes; "
            f"use a multiple of {world} (e.g. {max(world, batch_size // world * world)}) or change --nproc-per-node"
        )
