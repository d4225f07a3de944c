"""The fused path's backward: sweeps that carry mu = conj(dL/dstate) back through the schedule.

`Uncompute` (state vectors) keeps the final state psi and mu side by side in one pair buffer and walks the
steps in reverse: each block's M^H un-computes psi while M^T carries mu back (one product for both in real
circuits). `Recompute` (density matrices, whose channels cannot be un-computed) keeps a checkpoint every
sqrt(steps) steps in the forward and recomputes each segment's states from it. Both give dL/dM =
conj(Σ mu psi^T) per step, handed to autograd for the small matrices, and the product state's factors' gradients.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from qtransfer.quantum import kernels
from qtransfer.quantum.fused_measure import Measurement
from qtransfer.quantum.fused_passes import BufferPool, apply_step, forward_state
from qtransfer.quantum.fused_schedule import BlockStep, FusedSchedule, Step, WideStep

Grads = list[Tensor | None]
Result = tuple[Tensor, Tensor, Grads]  # dL/dleft, dL/dright, dL/dM per step


class Kept(Protocol):
    """What a differentiable forward keeps for its sweep."""


class Sweep(Protocol):
    """A forward that keeps what its backward needs, and that backward."""

    def forward(self, observe: bool, rows: int, left: Tensor, right: Tensor,
                step_mats: Sequence[Tensor | None]) -> tuple[Tensor, Kept]:
        """Outputs (rows, n_outputs), or the final state (2^n, rows) when not `observe`, and what it keeps."""
        ...

    def backward(self, kept: Kept, grad: Tensor, observe: bool, left: Tensor, right: Tensor,
                 step_mats: Sequence[Tensor | None], needs: Sequence[bool]) -> Result:
        """Gradients of the factors and of each step's matrix (None where not needed)."""
        ...


def _conj(t: Tensor) -> Tensor:
    return t.conj() if t.is_complex() else t


def step_grad(step: Step, n: int, m: Tensor, mu_out: Tensor, psi_in: Tensor) -> Tensor:
    """dL/dM = conj(Σ mu_out psi_in^T) of one block or wide gate, (d, d), per sample (rows, d, d) or per
    group of rows (models, rows per group, d, d)."""
    rows, per_sample = psi_in.shape[-1], m.dim() == 3
    if isinstance(step, BlockStep) and m.dim() == 4:
        g = kernels.block_grad_grouped(mu_out, psi_in, n, step.lo, step.k, rows, m.shape[0] * m.shape[1]).view(m.shape)
    elif isinstance(step, BlockStep):
        g = kernels.block_grad(mu_out, psi_in, n, step.lo, step.k, rows, per_sample)
    else:
        assert isinstance(step, WideStep)
        g = kernels.wide_grad(mu_out, psi_in, n, step.wires, rows, m.shape[-1], per_sample)
    return _conj(g)


def halves_grad(mu0: Tensor, left: Tensor, right: Tensor, scratch: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of the product state's factors from mu0 = conj(the initial state's gradient) (2^n, rows)."""
    rows = mu0.shape[-1]
    a, c = left.shape[0], right.shape[0]
    mu = mu0.view(a, c, rows)
    prod = scratch.view(a, c, rows)
    torch.mul(mu, right.unsqueeze(0), out=prod)
    g_left = _conj(prod.sum(1))
    torch.mul(mu, left.unsqueeze(1), out=prod)
    g_right = _conj(prod.sum(0))
    g_left = g_left.sum(-1, keepdim=True) if left.shape[-1] == 1 and rows > 1 else g_left
    g_right = g_right.sum(-1, keepdim=True) if right.shape[-1] == 1 and rows > 1 else g_right
    return g_left, g_right


class _Pair:
    """The uncompute sweep's keep: the pair buffer holding the final state at index j."""

    def __init__(self, pair: Tensor, j: int):
        self.pair, self.j = pair, j


class Uncompute:
    """The state-vector backward: walk back with the state and mu side by side, un-computing the state."""

    def __init__(self, schedule: FusedSchedule, pool: BufferPool, measurement: Measurement):
        self.s, self.pool, self.measurement = schedule, pool, measurement

    def forward(self, observe: bool, rows: int, left: Tensor, right: Tensor,
                step_mats: Sequence[Tensor | None]) -> tuple[Tensor, Kept]:
        """Run forward; keep the pair buffer with the final state."""
        pair, scratch = self.pool.take(rows), self.pool.take(rows)
        j = forward_state(self.s.steps, self.s.n, left, right, step_mats, pair)
        out = self.measurement.measure(pair[j], scratch) if observe else pair[j].clone()
        self.pool.give(scratch)
        return out, _Pair(pair, j)

    def backward(self, kept: Kept, grad: Tensor, observe: bool, left: Tensor, right: Tensor,
                 step_mats: Sequence[Tensor | None], needs: Sequence[bool]) -> Result:
        """The adjoint sweep; in real circuits one pass moves both the state and mu."""
        assert isinstance(kept, _Pair)
        pair, j, rows = kept.pair, kept.j, kept.pair.shape[-1]
        other = self.pool.take(rows)
        if observe:
            self.measurement.measure_grad(pair[j], grad, other, pair[1 - j])
        else:
            pair[1 - j].copy_(_conj(grad))
        real = not pair.is_complex()
        steps, n = self.s.steps, self.s.n
        grads: Grads = [None] * len(steps)
        for i in range(len(steps) - 1, -1, -1):
            step, m = steps[i], step_mats[i]
            if real:
                apply_step(step, n, pair, other, m, "adjoint")
            else:
                apply_step(step, n, pair[j], other[j], m, "adjoint")
                apply_step(step, n, pair[1 - j], other[1 - j], m, "transpose")
            if needs[i]:
                assert m is not None
                grads[i] = step_grad(step, n, m, pair[1 - j], other[j])
            pair, other = other, pair
        g_left, g_right = halves_grad(pair[1 - j], left, right, other[0])
        self.pool.give(pair, other)
        return g_left, g_right, grads


class _Checkpoints:
    """The recompute sweep's keep: copies of the state before every segment's first step."""

    def __init__(self, states: list[Tensor]):
        self.states = states


class Recompute:
    """The backward for operators that cannot be un-computed (channels): checkpoints every sqrt(steps) steps
    (about 2 sqrt(steps) states in all), each segment's states recomputed from its checkpoint."""

    def __init__(self, schedule: FusedSchedule, pool: BufferPool, measurement: Measurement):
        self.s, self.pool, self.measurement = schedule, pool, measurement
        self.segment = max(1, math.isqrt(len(schedule.steps)))

    def forward(self, observe: bool, rows: int, left: Tensor, right: Tensor,
                step_mats: Sequence[Tensor | None]) -> tuple[Tensor, Kept]:
        """Run forward; keep the checkpoints."""
        pair, scratch = self.pool.take(rows), self.pool.take(rows)
        checkpoints: list[Tensor] = []
        j = forward_state(self.s.steps, self.s.n, left, right, step_mats, pair, checkpoints, self.segment)
        out = self.measurement.measure(pair[j], scratch) if observe else pair[j].clone()
        self.pool.give(scratch, pair)
        return out, _Checkpoints(checkpoints)

    def backward(self, kept: Kept, grad: Tensor, observe: bool, left: Tensor, right: Tensor,
                 step_mats: Sequence[Tensor | None], needs: Sequence[bool]) -> Result:
        """Recompute each segment's states, then carry mu = conj(dL/dstate) back by M^T."""
        assert isinstance(kept, _Checkpoints)
        checkpoints = kept.states
        rows = max(left.shape[-1], right.shape[-1], grad.shape[0] if observe else grad.shape[-1])
        mu = self.pool.take(rows)
        if observe:
            self.measurement.measure_grad(mu[1], grad, mu[1], mu[0])
        else:
            mu[0].copy_(_conj(grad))
        steps, n, seg = self.s.steps, self.s.n, self.segment
        j = 0
        grads: Grads = [None] * len(steps)
        states: list[Tensor] = []
        for s0 in range((len(checkpoints) - 1) * seg, -1, -seg):
            stop = min(s0 + seg, len(steps))
            states[:1] = [checkpoints.pop()]
            for t in range(s0, stop - 1):
                if len(states) <= t - s0 + 1:
                    states.append(torch.empty_like(states[0]))
                apply_step(steps[t], n, states[t - s0], states[t - s0 + 1], step_mats[t])
            for t in range(stop - 1, s0 - 1, -1):
                step, m = steps[t], step_mats[t]
                apply_step(step, n, mu[j], mu[1 - j], m, "transpose")
                if needs[t]:
                    assert m is not None
                    grads[t] = step_grad(step, n, m, mu[j], states[t - s0])
                j = 1 - j
        g_left, g_right = halves_grad(mu[j], left, right, states[0] if states else mu[1 - j])
        self.pool.give(mu)
        return g_left, g_right, grads
