"""The fused path: a compiled schedule run on pooled state buffers, differentiated by an adjoint sweep.

Gate matrices, the product-state prefix and each block's k-wire matrix are small and built with torch
autograd (`fused_matrices`); the state itself flows through one autograd node (`_FusedSimulation`) whose
passes (`fused_passes`), measurement (`fused_measure`) and backward sweep (`fused_adjoint`) live in their own
modules; the schedule is compiled by `fused_schedule`. `DensityFusedCircuit` is the variant for density
matrices (noise): the same schedule over 2n wires, read as probabilities, differentiated by recomputing states
from checkpoints. See docs/ENGINE.md.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from qtransfer.quantum import fused_matrices as fm
from qtransfer.quantum.circuits import Circuit
from qtransfer.quantum.engine import solo_stacked
from qtransfer.quantum.fused_adjoint import Kept, Recompute, Sweep, Uncompute
from qtransfer.quantum.fused_measure import Expectations, Measurement, Probabilities
from qtransfer.quantum.fused_passes import BufferPool, forward_state
from qtransfer.quantum.fused_schedule import Channels, Op, compile_schedule, density_ops, statevector_ops
from qtransfer.quantum.gate_matrices import real_dtype
from qtransfer.quantum.memory import EVAL_AMPLITUDES
from qtransfer.quantum.params import ParamIndex, Sources

# Per-model blocks on rows-last states cost strided copies (their rows are not contiguous): above this many
# amplitudes per model (2^n x rows per model) models run one after another (measured: 5x slower stacked at 16 qubits,
# batch 4; 1.7x faster at 10 qubits; even at 12).
STACK_MAX_AMPLITUDES = 2**13


def eval_rows(n_qubits: int, rows: int) -> int:
    """How many samples a gradient-free run simulates at once."""
    return max(1, min(rows, EVAL_AMPLITUDES >> n_qubits))


def default_block_qubits(n_qubits: int, real: bool) -> int:
    """Block width that ran fastest on a 2-core CPU (benchmarks/head_speed.py, block widths 3-6 compared):
    wider blocks up to 12 qubits, where building the small matrices costs more than the state passes."""
    if n_qubits <= 12:
        return min(n_qubits, 5 if real else 4)
    return 4 if real else 3


class FusedCircuit:
    """A circuit compiled to a fused schedule on state vectors: the `fused` engine of `CompiledCircuit`.

    `run` is the batch-last core (also used by the PennyLane device); `outputs`, `state` and `stacked` are the
    `engine.Engine` interface."""

    group = 1  # wires per qubit

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device, block_qubits: int | None = None):
        self.circuit, self.dtype, self.device = circuit, dtype, device
        n = self.n = circuit.n_qubits * self.group
        k = block_qubits or default_block_qubits(n, not dtype.is_complex)
        self.schedule = compile_schedule(circuit, self._ops(), self.group, dtype, device, k)
        self.consts = torch.as_tensor(ParamIndex(circuit).consts, dtype=real_dtype(dtype), device=device)
        self.pool = BufferPool(2**n, dtype, device)
        self.measurement = self._measurement()
        self.sweep = self._sweep()

    def _ops(self) -> list[Op]:
        return statevector_ops(self.circuit)

    def _measurement(self) -> Measurement:
        return Expectations(self.circuit.observables, self.n, self.dtype, self.device)

    def _sweep(self) -> Sweep:
        return Uncompute(self.schedule, self.pool, self.measurement)

    # -- the engine interface ----------------------------------------------------------------
    def outputs(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Expectation values (batch, n_outputs)."""
        return self.run(inputs, weights, 1 if inputs is None else batch, observe=True).expand(batch, -1)

    def state(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Final states (batch, 2, ..., 2)."""
        s = self.run(inputs, weights, 1 if inputs is None else batch, observe=False)
        return s.T.expand(batch, -1).reshape((batch,) + (2,) * self.circuit.n_qubits)

    def stacked(self, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
        """Outputs (models, batch, n_outputs) or states (models, batch, 2, ..., 2) of many models in one call."""
        models = weights.shape[0]
        if models == 1:
            return solo_stacked(self, inputs, weights, batch, observe)
        rows = 1 if inputs is None else inputs.shape[1]  # each model's simulated rows
        out = self.run(inputs, weights, models * rows, observe, models=models)
        out = (out if observe else out.T).view(models, rows, -1).expand(models, batch, -1)
        return out if observe else out.reshape((models, batch) + (2,) * self.circuit.n_qubits)

    # -- the core ----------------------------------------------------------------------------
    def run(
        self, inputs: Tensor | None, weights: Tensor, rows: int, observe: bool, models: int | None = None
    ) -> Tensor:
        """Expectation values (rows, n_outputs), or the final state batch-last (2^n, rows) when not `observe`.

        With `models`, weights (models, n_weights) and inputs (models, rows / models, n_inputs) or None: rows run
        model by model, each model's gates built from its own weights and its blocks applied to its rows; large
        states (see STACK_MAX_AMPLITUDES) run one model after another."""
        if models is not None and (2**self.n) * (rows // models) > STACK_MAX_AMPLITUDES:
            parts = [self.run(None if inputs is None else inputs[k], weights[k], rows // models, observe)
                     for k in range(models)]
            return torch.cat(parts, 0 if observe else 1)
        sources = Sources(inputs, weights if models is None else weights.unsqueeze(1), self.consts)
        s = self.schedule
        mats = fm.gate_matrices(s, sources)  # with models: (models, 1 or rows per model, gates, d, d)
        left, right = fm.halves(s, mats if models is None else [fm.per_row(m, rows) for m in mats])
        step_mats = fm.step_matrices(s, mats, rows)
        small = (left, right, *step_mats)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in small):
            out: Tensor = _FusedSimulation.apply(self, observe, rows, left, right, *step_mats)
            return out
        with torch.no_grad():
            chunk = eval_rows(self.n, rows)
            if chunk >= rows:
                return self._run_no_grad(left, right, step_mats, observe, rows)
            parts = [self._run_no_grad(_cut(left, i, chunk), _cut(right, i, chunk),
                                       [_rows_of(m, i, chunk, rows) for m in step_mats], observe,
                                       min(chunk, rows - i)) for i in range(0, rows, chunk)]
            return torch.cat(parts, 0 if observe else 1)

    def _run_no_grad(self, left: Tensor, right: Tensor, step_mats: Sequence[Tensor | None], observe: bool,
                     rows: int) -> Tensor:
        pair, scratch = self.pool.take(rows), self.pool.take(rows)
        j = forward_state(self.schedule.steps, self.n, left, right, step_mats, pair)
        out = self.measurement.measure(pair[j], scratch) if observe else pair[j].clone()
        self.pool.give(pair, scratch)
        return out


def _cut(t: Tensor, i: int, chunk: int) -> Tensor:
    """Columns i .. i + chunk of a product-state factor (2^h, rows), unless it is shared (2^h, 1)."""
    return t if t.shape[-1] == 1 or t.dim() < 2 else t[..., i : i + chunk]


def _rows_of(m: Tensor | None, i: int, chunk: int, rows: int) -> Tensor | None:
    """Rows i .. i + chunk of a per-sample step matrix; shared ones unchanged."""
    return m if m is None or m.dim() < 3 else fm.per_row(m, rows)[i : i + chunk]


class DensityFusedCircuit(FusedCircuit):
    """The fused schedule on a density matrix vectorised over 2n wires (noise): gates as U ⊗ conj(U), `channels`
    (per gate, the (qubit, superoperator) pairs applied after it) as superoperators; returns basis-state
    probabilities, and differentiates by recomputing states from checkpoints (channels cannot be un-computed)."""

    group = 2

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device, channels: Channels,
                 block_qubits: int | None = None):
        self.channels = channels
        super().__init__(circuit, dtype, device, block_qubits)

    def _ops(self) -> list[Op]:
        return density_ops(self.circuit, self.channels)

    def _measurement(self) -> Measurement:
        return Probabilities(self.circuit.n_qubits)

    def _sweep(self) -> Sweep:
        return Recompute(self.schedule, self.pool, self.measurement)


class _FusedSimulation(torch.autograd.Function):
    """The state's whole journey as one autograd node; backward is the engine's sweep."""

    @staticmethod
    def forward(ctx: Any, sim: FusedCircuit, observe: bool, rows: int, left: Tensor, right: Tensor,
                *step_mats: Tensor | None) -> Tensor:
        out, kept = sim.sweep.forward(observe, rows, left, right, step_mats)
        ctx.sim, ctx.observe, ctx.kept = sim, observe, kept
        ctx.save_for_backward(left, right, *step_mats)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        kept: Kept | None = ctx.kept
        if kept is None:  # the sweep consumed the states it kept
            raise RuntimeError("the fused engine's simulation can be differentiated once per forward pass; run the "
                               "circuit again for another gradient")
        ctx.kept = None
        left, right, *step_mats = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_left, g_right, grads = ctx.sim.sweep.backward(kept, grad, ctx.observe, left, right, step_mats, need[5:])
        return (None, None, None, g_left if need[3] else None, g_right if need[4] else None, *grads)
