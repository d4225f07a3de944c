"""Head training split across ranks: DistributedDataParallel, each rank fed its slice of every global batch.

Every rank draws the same seeded permutation as a single-process run and takes a contiguous slice of each
global batch. (A DistributedSampler would draw its own permutation and stride it over the whole epoch, and
pad the last batch by repeating samples: other batches than a single-process run's, so other metrics.)
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` under DistributedDataParallel when distributed, else itself."""
    if not distributed.is_distributed():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """This rank's slice of each shuffled global batch, and the global batch's size; draws from `generator`
    exactly as train._batches does, so the global batches are a single-process run's."""
    order = torch.randperm(len(x), generator=generator)
    views = torch.randint(x.shape[1], (len(x),), generator=generator) if x.dim() == 3 else None
    rank, world = distributed.rank(), distributed.world_size()
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        n = len(idx)
        idx = idx.tensor_split(world)[rank]
        yield (x[idx] if views is None else x[idx, views[idx]]), y[idx], n


def train_steps(
    model: nn.Module, batches: Iterator[tuple[Tensor, Tensor, int]], optimizer: torch.optim.Optimizer,
    device: torch.device, epoch: int, hint: str = "",
) -> tuple[float, float]:
    """One epoch of synchronised optimizer steps; returns the global mean training loss and accuracy."""
    from .train import NonFiniteLoss

    world = distributed.world_size()
    total_loss, correct, seen = 0.0, 0, 0
    for step, (x, y, n) in enumerate(batches, 1):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        logits = model(x)
        loss_sum = nn.functional.cross_entropy(logits, y, reduction="sum")
        right = int((logits.argmax(1) == y).sum())
        batch_loss, batch_right = distributed.all_sum([loss_sum.item(), right], device)
        if not torch.isfinite(torch.tensor(batch_loss)):  # every rank sees the same sum, so all stop together
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLoss(
                f"loss is {batch_loss / n} at epoch {epoch}, step {step}{'; ' + hint if hint else ''}. "
                f"Try a lower --lr (now {lr:g})."
            )
        # DDP averages gradients over ranks: scaled so, the average is the gradient of the global batch's mean loss
        (loss_sum * (world / n)).backward()
        optimizer.step()
        total_loss += batch_loss
        correct += int(batch_right)
        seen += n
    return total_loss / seen, correct / seen
