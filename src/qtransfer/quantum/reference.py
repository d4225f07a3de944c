"""The gate-by-gate path: states (batch, 2, ..., 2) with each gate applied in turn, differentiated by torch autograd.

The plain reference the other engines are tested against, and the functional API it is built from.
Wire 0 is the most significant bit of a basis-state index, as in PennyLane.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit, Observable
from qtransfer.quantum.gate_matrices import gate_matrix, real_dtype, z_signs
from qtransfer.quantum.params import ParamIndex, Sources


def zero_state(
    n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """|0...0> for `batch` samples, shape (batch, 2, ..., 2)."""
    state = torch.zeros((batch, 2**n_qubits), dtype=dtype, device=device)
    state[:, 0] = 1
    return state.view((batch,) + (2,) * n_qubits)


def apply_matrix(state: Tensor, matrix: Tensor, wires: Sequence[int]) -> Tensor:
    """Apply a (d, d) or per-sample (batch, d, d) matrix to `wires` of a (batch, 2, ..., 2) state."""
    n = state.dim() - 1
    k = len(wires)
    axes = [1 + w for w in wires]
    moved = state.movedim(axes, list(range(n + 1 - k, n + 1)))
    shape = moved.shape
    flat = moved.reshape(shape[0], -1, 2**k)
    out = torch.bmm(flat, matrix.transpose(1, 2)) if matrix.dim() == 3 else flat @ matrix.T
    return out.view(shape).movedim(list(range(n + 1 - k, n + 1)), axes)


def apply_gate(state: Tensor, name: str, wires: Sequence[int], params: Tensor | None = None) -> Tensor:
    """Apply gate `name`; `params` of shape (n_params,) or per-sample (batch, n_params)."""
    m = gate_matrix(name, params, dtype=state.dtype, device=state.device)
    return apply_matrix(state, m, wires)


def probabilities(state: Tensor, wires: Sequence[int] | None = None) -> Tensor:
    """Probabilities of the basis states of `wires` (all wires when None), shape (batch, 2**k)."""
    n = state.dim() - 1
    p = state.real**2 + state.imag**2 if state.is_complex() else state**2
    if wires is None:
        return p.reshape(p.shape[0], -1)
    others = [1 + w for w in range(n) if w not in wires]
    if others:
        p = p.sum(dim=others)
    # sum keeps the remaining wires in increasing order; reorder to the order asked for
    order = sorted(wires)
    p = p.permute([0] + [1 + order.index(w) for w in wires])
    return p.reshape(p.shape[0], -1)


def expval(state: Tensor, observable: Observable) -> Tensor:
    """Expectation of a Pauli product on a (batch, 2, ..., 2) state, shape (batch,)."""
    if observable.diagonal:
        p = probabilities(state, observable.wires)
        signs = torch.as_tensor(z_signs(len(observable.wires)), dtype=p.dtype, device=p.device)
        return p @ signs
    phi = state
    for pauli, w in zip(observable.paulis, observable.wires):
        phi = apply_matrix(phi, gate_matrix(pauli, dtype=state.dtype, device=state.device), [w])
    inner = (state.conj() * phi).reshape(state.shape[0], -1).sum(1)
    return inner.real if inner.is_complex() else inner



class GateEngine:
    """The `gates` engine of `CompiledCircuit` (`engine.Engine`): gate by gate, torch autograd through every gate."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device):
        self.circuit, self.dtype, self.device = circuit, dtype, device
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(dtype), device=device)
        self.gathers = [self._gate_gather(gi, len(g.params)) if g.params else None
                        for gi, g in enumerate(circuit.gates)]

    def _gate_gather(self, gi: int, n_params: int) -> tuple[str, Tensor]:
        source, local = self.pindex.locate(np.array([self.pindex.slots[gi, p] for p in range(n_params)]))
        return source, torch.as_tensor(local, device=self.device)

    def state(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Final states (batch, 2, ..., 2); weights (n_weights,) shared, or (batch, n_weights) per row."""
        sources = Sources(inputs, weights, self.consts)
        state = zero_state(self.circuit.n_qubits, batch, self.dtype, self.device)
        for g, gather in zip(self.circuit.gates, self.gathers):
            params = None if gather is None else sources[gather[0]].index_select(-1, gather[1])
            m = gate_matrix(g.name, params, dtype=self.dtype, device=self.device)
            state = apply_matrix(state, m, g.wires)
        return state

    def outputs(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Expectation values (batch, n_outputs)."""
        state = self.state(inputs, weights, batch)
        return torch.stack([expval(state, o) for o in self.circuit.observables], dim=1)

    def stacked(self, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
        """Outputs (models, batch, n_outputs) or states (models, batch, 2, ..., 2): each model's weights repeated
        over its rows."""
        models = weights.shape[0]
        rows = 1 if inputs is None else inputs.shape[1]  # each model's simulated rows
        flat = None if inputs is None else inputs.reshape(models * rows, -1)
        state = self.state(flat, weights.repeat_interleave(rows, 0), models * rows)
        if not observe:
            return state.view(models, rows, *state.shape[1:]).expand(models, batch, *state.shape[1:])
        out = torch.stack([expval(state, o) for o in self.circuit.observables], dim=1).view(models, rows, -1)
        return out.expand(models, batch, out.shape[-1])
