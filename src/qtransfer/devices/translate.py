"""A PennyLane tape as the engine's circuit description: broadcast parameters become per-sample inputs, the others
weights, so tapes of one structure share one compiled circuit whatever their parameter values."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pennylane as qml
import torch
from torch import Tensor

from qtransfer.devices.native import ENGINE_GATES, GLOBAL_PHASE, SKIPPED
from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Gate, Observable, inp, weight
from qtransfer.quantum.gate_matrices import complex_dtype
from qtransfer.quantum.statevector import CompiledCircuit

COMPILED_CACHE_SIZE = 64
_compiled: OrderedDict[tuple, CompiledCircuit] = OrderedDict()
_circuits: dict[tuple, Circuit] = {}


@dataclass
class Translation:
    """A tape on the engine: its circuit, this call's inputs (batch, n_inputs) or None, weights, global phase."""

    circuit: Circuit
    inputs: Tensor | None
    weights: Tensor
    phase: Tensor | None
    batch_size: int | None


def as_tensor(value: object, dtype: torch.dtype) -> Tensor:
    """A parameter as a torch tensor of `dtype`, keeping its autograd history when it is one already."""
    if isinstance(value, Tensor):
        return value if value.dtype == dtype else value.to(dtype)
    return torch.as_tensor(np.asarray(qml.math.unwrap(value), dtype=float), dtype=dtype)


def pauli_observables(tape: qml.tape.QuantumScript) -> list[Observable] | None:
    """The distinct Pauli words the tape's expectation values are sums of (by wire position), or None when
    some measurement is not such an expectation value."""
    words: dict[Observable, None] = {}
    for mp in tape.measurements:
        if not isinstance(mp, qml.measurements.ExpectationMP) or mp.obs is None or mp.obs.pauli_rep is None:
            return None
        for word in mp.obs.pauli_rep:
            if word:
                words[word_observable(word)] = None
    return list(words)


def word_observable(word: qml.pauli.PauliWord) -> Observable:
    """A Pauli word on integer wires as the engine's observable."""
    wires = tuple(int(w) for w in word)
    return Observable("".join(word[w] for w in word), wires)


def translate(tape: qml.tape.QuantumScript, n_qubits: int, dtype: torch.dtype,
              observables: list[Observable] | None = None, params: list | None = None) -> Translation:
    """The engine's description of a tape on integer wires 0..n_qubits-1 made only of native operations;
    `params` replaces its operations' parameters, in order (binding them to a new tape costs more)."""
    values = iter(params) if params is not None else None
    # native gates take scalars, so a parameter with one axis is broadcast (tape.batch_size costs more than a run)
    batch = None
    structure: list[tuple] = []  # (engine name, wires, per parameter: is it an input)
    inputs: list[Tensor] = []
    weights: list[Tensor] = []
    phases: list[Tensor] = []
    for op in tape.operations:
        name = op.name
        if name in SKIPPED:
            if values is not None:
                for _ in op.data:
                    next(values)
            continue
        if name == GLOBAL_PHASE:
            phases.append(as_tensor(op.data[0] if values is None else next(values), dtype))
            batch = phases[-1].shape[0] if phases[-1].dim() == 1 else batch
            continue
        if name not in ENGINE_GATES:
            raise InputError(f"operation {name} is not native to the engine; decompose the tape first "
                             "(qml.device('qtransfer.qubit') does this in its preprocessing)")
        kinds = []
        for p in (op.data if values is None else [next(values) for _ in op.data]):
            t = as_tensor(p, dtype)
            per_sample = t.dim() == 1
            batch = t.shape[0] if per_sample else batch
            kinds.append(per_sample)
            (inputs if per_sample else weights).append(t)
        structure.append((ENGINE_GATES[name], tuple(op.wires.tolist()), tuple(kinds)))
    circuit = _circuit(n_qubits, tuple(structure), tuple(observables) if observables else (Observable("Z", (0,)),))
    phase = None
    if phases:
        phase = phases[0]
        for p in phases[1:]:
            phase = phase + p
    return Translation(
        circuit,
        torch.stack(inputs, 1) if inputs else None,
        torch.stack(weights) if weights else torch.zeros(0, dtype=dtype),
        phase,
        batch,
    )


def _circuit(n_qubits: int, structure: tuple, observables: tuple[Observable, ...]) -> Circuit:
    """The Circuit of a tape structure, built (and checked) once."""
    key = (n_qubits, structure, observables)
    hit = _circuits.get(key)
    if hit is not None:
        return hit
    gates, counts = [], [0, 0]  # inputs, weights so far
    for name, wires, kinds in structure:
        params = []
        for per_sample in kinds:
            params.append(inp(counts[0]) if per_sample else weight(counts[1]))
            counts[not per_sample] += 1
        gates.append(Gate(name, tuple(int(w) for w in wires), tuple(params)))
    if len(_circuits) >= COMPILED_CACHE_SIZE:
        _circuits.pop(next(iter(_circuits)))
    made = _circuits[key] = Circuit(n_qubits, counts[0], (counts[1],), tuple(gates), observables)
    return made


def compiled(circuit: Circuit, dtype: torch.dtype, method: str) -> CompiledCircuit:
    """The compiled circuit for a structure, built once and kept among the most recent."""
    key = (circuit, dtype, method)
    hit = _compiled.get(key)
    if hit is not None:
        _compiled.move_to_end(key)
        return hit
    made = _compiled[key] = CompiledCircuit(circuit, dtype=dtype, method=method)
    if len(_compiled) > COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return made


class _Repeatable(torch.autograd.Function):
    """A run of the fused engine as one node that can be differentiated again: the engine's own node frees
    (statevector) or reuses as scratch (density matrix) what its backward needs, so a second backward pass
    (torch.autograd.functional.jacobian, retain_graph) runs the engine again instead."""

    @staticmethod
    def forward(ctx, run, inputs: Tensor | None, weights: Tensor) -> Tensor:
        ctx.run, ctx.leaves = run, _leaves(inputs, weights)
        with torch.enable_grad():
            ctx.out = run(*ctx.leaves)
        return ctx.out.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        leaves, out = ctx.leaves, ctx.out
        if out is None:
            leaves = _leaves(*leaves)
            with torch.enable_grad():
                out = ctx.run(*leaves)
        ctx.out = None
        want = [t for t in leaves if t is not None and t.requires_grad]
        grads = iter(torch.autograd.grad(out, want, grad, allow_unused=True))
        return (None, *(next(grads) if t is not None and t.requires_grad else None for t in leaves))


def _leaves(*tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else t.detach().requires_grad_(t.requires_grad) for t in tensors]


def repeatable(run, inputs: Tensor | None, weights: Tensor) -> Tensor:
    """run(inputs, weights), through a node that can be differentiated more than once when it needs to be."""
    grads = torch.is_grad_enabled() and (weights.requires_grad or (inputs is not None and inputs.requires_grad))
    return _Repeatable.apply(run, inputs, weights) if grads else run(inputs, weights)


def expvals(t: Translation, dtype: torch.dtype, method: str) -> Tensor:
    """The circuit's observables' expectation values, (batch, n_observables)."""
    sim = compiled(t.circuit, dtype, method)
    return repeatable(sim, t.inputs, t.weights) if sim.method == "fused" else sim(t.inputs, t.weights)


def final_state(t: Translation, dtype: torch.dtype, method: str) -> Tensor:
    """The final state, complex, shape (batch, 2, ..., 2) when broadcast, else (2, ..., 2)."""
    sim = compiled(t.circuit, dtype, method)
    state = repeatable(sim.state, t.inputs, t.weights) if sim.method == "fused" else sim.state(t.inputs, t.weights)
    state = state.to(complex_dtype(dtype))
    if t.batch_size is not None and state.shape[0] != t.batch_size:
        state = state.expand(t.batch_size, *state.shape[1:])
    if t.phase is not None:
        phase = torch.exp(-1j * t.phase.to(state.dtype))
        state = state * (phase.reshape((-1,) + (1,) * t.circuit.n_qubits) if phase.dim() else phase)
    return state if t.batch_size is not None else state[0]
