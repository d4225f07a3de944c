"""The interface every path of `CompiledCircuit` implements: compiled once per circuit, dtype and device.

Paths: `dense.DenseEngine` (full matrices, n <= 6), `fused.FusedCircuit` (fused blocks) and
`reference.GateEngine` (gate by gate, torch autograd). See docs/ENGINE.md.
"""
from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Engine(Protocol):
    """A compiled circuit's simulation: outputs, final states, and many models in one call.

    Inputs and weights arrive checked and cast (by `CompiledCircuit`): inputs (batch, n_inputs) or None, weights
    (n_weights,); with a model axis inputs (models, batch, n_inputs) or None and weights (models, n_weights).
    Gradients flow by torch autograd: through one node whose backward sweeps the circuit (dense, fused), or gate by
    gate (the reference)."""

    def outputs(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Expectation values (batch, n_outputs)."""
        ...

    def state(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Final states (batch, 2, ..., 2)."""
        ...

    def stacked(self, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
        """Outputs (models, batch, n_outputs), or states (models, batch, 2, ..., 2) when not `observe`."""
        ...


def solo_stacked(engine: Engine, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
    """A stack of one model run on the solo path (fewer ops), with its model axis."""
    solo_inputs = None if inputs is None else inputs[0]
    out = engine.outputs(solo_inputs, weights[0], batch) if observe else engine.state(solo_inputs, weights[0], batch)
    return out.unsqueeze(0)
