"""Batched, differentiable statevector simulation in plain torch: `CompiledCircuit` and the functional API.

`CompiledCircuit` checks its arguments and hands them to one engine (`engine.Engine`), selected when it is built:
dense (`dense.py`), fused (`fused.py`) or gate by gate (`reference.py`). Wire 0 is the most significant bit of a
basis-state index, as in PennyLane. A state has shape (batch, 2, ..., 2); gate matrices have shape (..., d, d)
with optional leading batch dims.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit
from qtransfer.quantum.dense import DenseEngine
from qtransfer.quantum.engine import Engine
from qtransfer.quantum.fused import FusedCircuit
from qtransfer.quantum.gate_matrices import real_dtype, run_dtype
from qtransfer.quantum.memory import DENSE_MAX_QUBITS
from qtransfer.quantum.reference import GateEngine, apply_gate, apply_matrix, expval, probabilities, zero_state

__all__ = [
    "ENGINES",
    "CompiledCircuit",
    "apply_gate",
    "apply_matrix",
    "expval",
    "model_axis",
    "probabilities",
    "simulate",
    "zero_state",
]

# The engines by method name, each built as (circuit, run dtype, device, block qubits).
ENGINES: dict[str, Callable[[Circuit, torch.dtype, torch.device, int | None], Engine]] = {
    "dense": lambda c, dtype, device, k: DenseEngine(c, dtype, device),
    "fused": lambda c, dtype, device, k: FusedCircuit(c, dtype, device, k),
    "gates": lambda c, dtype, device, k: GateEngine(c, dtype, device),
}


class CompiledCircuit:
    """A circuit prepared for fast repeated simulation at one dtype on one device.

    method "dense" builds the full 2^n x 2^n matrix of every moment (gates on disjoint wires),
    folds constant moments at compile time and multiplies each stretch that depends only on
    weights into one matrix per call; its gradient is the adjoint method, in one autograd node.
    "fused" (fused.py) builds a product state from each wire's first gates, groups the rest into blocks
    of a few adjacent wires applied with one matrix product each, and differentiates by an adjoint sweep
    that keeps a few states whatever the depth. "gates" applies gate by gate to the state, differentiated
    by torch autograd: the plain reference the others are checked against. "auto" is dense up to
    DENSE_MAX_QUBITS qubits, fused above.
    """

    DENSE_MAX_QUBITS = DENSE_MAX_QUBITS

    def __init__(
        self,
        circuit: Circuit,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        method: str = "auto",
        block_qubits: int | None = None,
    ):
        if method == "auto":
            method = "dense" if circuit.n_qubits <= self.DENSE_MAX_QUBITS else "fused"
        if method not in ENGINES:
            raise InputError(f"method must be 'auto', 'dense', 'fused' or 'gates', got {method!r}")
        self.circuit, self.method = circuit, method
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = run_dtype(circuit, dtype)
        self.engine = ENGINES[method](circuit, self.dtype, self.device, block_qubits)

    def state(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Final state, shape (batch, 2, ..., 2), for inputs (batch, n_inputs) and flat weights; with a model axis
        (inputs (models, batch, n_inputs), weights (models, n_weights)) shape (models, batch, 2, ..., 2)."""
        inputs, weights, batch, models = self._check(inputs, weights)
        if models is not None:
            return self.engine.stacked(inputs, weights, batch, observe=False)
        return self.engine.state(inputs, weights, batch)

    def __call__(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Expectation values of the circuit's observables, shape (batch, n_outputs); with a model axis (inputs
        (models, batch, n_inputs), weights (models, n_weights)) shape (models, batch, n_outputs)."""
        inputs, weights, batch, models = self._check(inputs, weights)
        if models is not None:
            return self.engine.stacked(inputs, weights, batch, observe=True)
        return self.engine.outputs(inputs, weights, batch)

    def _check(self, inputs: Tensor | None, weights: Tensor) -> tuple[Tensor | None, Tensor, int, int | None]:
        c, rd = self.circuit, real_dtype(self.dtype)
        models = model_axis(c, inputs, weights)
        if models is not None:
            return self._check_stacked(inputs, weights, models)
        weights = weights if weights.dim() == 1 else weights.reshape(-1)
        weights = weights if weights.dtype == rd else weights.to(rd)
        if weights.numel() != c.n_weights:
            raise InputError(
                f"weights have {weights.numel()} values; circuit {c.name!r} needs {c.n_weights} "
                f"(shape {c.weight_shape}); for many models at once pass weights (models, {c.n_weights}) "
                f"with inputs (models, batch, {c.n_inputs})"
            )
        if c.n_inputs == 0:
            return None, weights, 1 if inputs is None else inputs.shape[0], None
        if inputs is None or inputs.dim() != 2 or inputs.shape[1] != c.n_inputs:
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"inputs must have shape (batch, {c.n_inputs}), or (models, batch, {c.n_inputs}) "
                             f"with weights (models, {c.n_weights}); got {got}")
        return (inputs if inputs.dtype == rd else inputs.to(rd)), weights, inputs.shape[0], None

    def _check_stacked(
        self, inputs: Tensor | None, weights: Tensor, models: int
    ) -> tuple[Tensor | None, Tensor, int, int]:
        c, rd = self.circuit, real_dtype(self.dtype)
        if weights.dim() != 2 or tuple(weights.shape) != (models, c.n_weights):
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"with inputs of shape {got} (models, batch, n_inputs), weights must have shape "
                             f"(models, n_weights) = ({models}, {c.n_weights}); got {tuple(weights.shape)}")
        weights = weights if weights.dtype == rd else weights.to(rd)
        if c.n_inputs == 0:
            return None, weights, 1 if inputs is None else inputs.shape[1], models
        if inputs is None or inputs.shape[2] != c.n_inputs:
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"inputs must have shape (models, batch, {c.n_inputs}) = ({models}, batch, {c.n_inputs}) "
                             f"for weights of shape {tuple(weights.shape)}; got {got}")
        return (inputs if inputs.dtype == rd else inputs.to(rd)), weights, inputs.shape[1], models


def model_axis(circuit: Circuit, inputs: Tensor | None, weights: Tensor) -> int | None:
    """The number of models when a call stacks many (inputs (models, batch, n_inputs), or for a circuit without
    inputs weights (models, n_weights) other than its own weight_shape), else None."""
    if inputs is not None and inputs.dim() == 3:
        return inputs.shape[0]
    if (inputs is None and circuit.n_inputs == 0 and weights.dim() == 2 and weights.shape[1] == circuit.n_weights
            and tuple(weights.shape) != circuit.weight_shape):
        return weights.shape[0]
    return None


def simulate(
    circuit: Circuit,
    inputs: Tensor | None,
    weights: Tensor,
    dtype: torch.dtype = torch.float32,
    method: str = "auto",
) -> Tensor:
    """One-off simulation: expectation values (batch, n_outputs) of `circuit`."""
    device = weights.device
    return CompiledCircuit(circuit, dtype=dtype, device=device, method=method)(inputs, weights)
