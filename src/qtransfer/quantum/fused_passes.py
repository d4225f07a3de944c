"""The fused path's passes over the batched state: pooled buffers, one step applied (U, U^H or U^T), the forward run.

States are batch-last (2^n, rows) inside pairs (2, 2^n, rows); every pass writes into a given buffer.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from qtransfer.quantum import kernels
from qtransfer.quantum.fused_schedule import GatherStep, Step, WideStep

Mode = Literal["forward", "adjoint", "transpose"]


class BufferPool:
    """Reused state buffers (2, 2^n, rows): fresh memory of this size costs more than a pass (page faults).
    Holds buffers for one batch size; asking for another drops them."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        self.size, self.dtype, self.device = size, dtype, device
        self.rows = 0
        self.free: list[Tensor] = []

    def take(self, rows: int) -> Tensor:
        """A buffer (2, 2^n, rows), uninitialised."""
        if rows != self.rows:
            self.free, self.rows = [], rows
        return self.free.pop() if self.free else torch.empty(2, self.size, rows, dtype=self.dtype, device=self.device)

    def give(self, *buffers: Tensor) -> None:
        """Return buffers taken with `take` (at most two are kept)."""
        for b in buffers:
            if b.shape[-1] == self.rows and len(self.free) < 2:
                self.free.append(b)


def apply_step(step: Step, n: int, x: Tensor, out: Tensor, m: Tensor | None, mode: Mode = "forward") -> Tensor:
    """Apply a step's operator U ("forward"), U^H ("adjoint") or U^T ("transpose") from x into out."""
    if isinstance(step, GatherStep):
        source, phase = step.forward if mode == "forward" else step.adjoint if mode == "adjoint" else step.transpose
        torch.index_select(x, -2, source, out=out)
        return out if phase is None else out.mul_(phase)
    assert m is not None
    m = m if mode == "forward" else m.mH if mode == "adjoint" else m.mT
    rows = x.shape[-1]
    if isinstance(step, WideStep):
        return kernels.apply_wide(x, out, m, n, step.wires, rows, step.pattern)
    return kernels.apply_block(x, out, m, n, step.lo, step.k, rows)


def forward_state(steps: Sequence[Step], n: int, left: Tensor, right: Tensor, step_mats: Sequence[Tensor | None],
                  pair: Tensor, checkpoints: list[Tensor] | None = None, segment: int = 1) -> int:
    """Run the steps from the product state left ⊗ right inside `pair` (2, 2^n, rows); the final state's index
    in it. With `checkpoints`, copies of the state before every `segment` steps' first."""
    rows = pair.shape[-1]
    a, c = left.shape[0], right.shape[0]
    torch.mul(left.unsqueeze(1).expand(a, 1, rows), right.unsqueeze(0).expand(1, c, rows), out=pair[0].view(a, c, rows))
    j = 0
    for i, (step, m) in enumerate(zip(steps, step_mats)):
        if checkpoints is not None and i % segment == 0:
            checkpoints.append(pair[j].clone())
        apply_step(step, n, pair[j], pair[1 - j], m)
        j = 1 - j
    return j
