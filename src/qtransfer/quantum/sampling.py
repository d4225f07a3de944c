"""Expectation values as a quantum computer reports them: measured bit strings, finite shots, readout error,
and gradients by the parameter-shift rule."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit, Gate, Observable, Param, const, inp

# Parameter-shift rules: gate -> [(shift, coefficient)] with d f/dt = sum coefficient * f(t + shift).
_TWO_TERM = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))
_C_PLUS, _C_MINUS = (math.sqrt(2) + 1) / (4 * math.sqrt(2)), (math.sqrt(2) - 1) / (4 * math.sqrt(2))
_FOUR_TERM = ((math.pi / 2, _C_PLUS), (-math.pi / 2, -_C_PLUS), (3 * math.pi / 2, -_C_MINUS),
              (-3 * math.pi / 2, _C_MINUS))
ShiftRule = tuple[tuple[float, float], ...]  # (shift, coefficient) pairs
SHIFT_RULES: dict[str, ShiftRule] = dict.fromkeys(
    ("RX", "RY", "RZ", "PhaseShift", "Rot", "IsingXX", "IsingYY", "IsingZZ"), _TWO_TERM)
SHIFT_RULES.update(dict.fromkeys(("CRX", "CRY", "CRZ"), _FOUR_TERM))

# Rotations that turn a Pauli measurement into a Z measurement: U with U† Z U = P.
_TO_Z = {"X": (("H", ()),), "Y": (("PhaseShift", (-math.pi / 2,)), ("H", ())), "Z": ()}


@dataclass(frozen=True)
class Unrolled:
    """A circuit whose every gate parameter reads its own input column ("angle"), and where each came from."""

    circuit: Circuit
    sources: tuple[Param, ...]  # column m came from this parameter of the original circuit
    rules: tuple[ShiftRule, ...]  # column m's shift rule


def unroll(circuit: Circuit) -> Unrolled:
    """One input column per gate parameter, so each can be shifted alone."""
    gates: list[Gate] = []
    sources: list[Param] = []
    rules: list[ShiftRule] = []
    for g in circuit.gates:
        params = []
        for p in g.params:
            params.append(inp(len(sources)))
            sources.append(p)
            rules.append(SHIFT_RULES.get(g.name, ()))
        gates.append(Gate(g.name, g.wires, tuple(params)))
    flat = Circuit(circuit.n_qubits, len(sources), (0,), tuple(gates), circuit.observables,
                   name=f"{circuit.name}-unrolled")
    return Unrolled(flat, tuple(sources), tuple(rules))


def angles(unrolled: Unrolled, inputs: Tensor | None, weights: Tensor) -> Tensor:
    """Every gate's parameter values, (batch, columns), differentiable in inputs and weights."""
    batch = 1 if inputs is None else inputs.shape[0]
    cols = []
    for p in unrolled.sources:
        if p.source == "input":
            cols.append(inputs[:, p.index])  # type: ignore[index]
        elif p.source == "weight":
            cols.append(weights[p.index].expand(batch))
        else:
            cols.append(torch.full((batch,), p.value, dtype=weights.dtype, device=weights.device))
    if not cols:
        return torch.zeros(batch, 0, dtype=weights.dtype, device=weights.device)
    return torch.stack(cols, dim=1)


def measurement_groups(observables: Sequence[Observable]) -> list[list[int]]:
    """Observables split into groups measurable on the same shots (the same Pauli on every shared wire)."""
    groups: list[tuple[dict[int, str], list[int]]] = []
    for i, o in enumerate(observables):
        basis = dict(zip(o.wires, o.paulis))
        for wires, members in groups:
            if all(wires.get(w, p) == p for w, p in basis.items()):
                wires.update(basis)
                members.append(i)
                break
        else:
            groups.append((basis, [i]))
    return [members for _, members in groups]


def rotated(circuit: Circuit, observables: Sequence[Observable]) -> Circuit:
    """`circuit` followed by the rotations that make `observables` (one group) Z measurements."""
    basis = {w: p for o in observables for w, p in zip(o.wires, o.paulis)}
    extra = [Gate(name, (w,), tuple(const(v) for v in values))
             for w, p in sorted(basis.items()) for name, values in _TO_Z[p]]
    return Circuit(circuit.n_qubits, circuit.n_inputs, circuit.weight_shape, circuit.gates + tuple(extra),
                   circuit.observables, name=circuit.name)


def parity_signs(n_qubits: int, observables: Sequence[Observable]) -> np.ndarray:
    """(2^n, len(observables)): the ±1 eigenvalue of each Z-product observable on each basis state."""
    index = np.arange(2**n_qubits)
    bits = (index[:, None] >> np.arange(n_qubits - 1, -1, -1)[None, :]) & 1
    return np.stack([np.prod(1 - 2 * bits[:, list(o.wires)], axis=1) for o in observables], axis=1).astype(float)


def readout_probabilities(probs: Tensor, n_qubits: int, p01: float, p10: float) -> Tensor:
    """Basis-state probabilities after each qubit's reading flips 0→1 with p01 and 1→0 with p10."""
    if p01 == 0 and p10 == 0:
        return probs
    confusion = torch.tensor([[1 - p01, p10], [p01, 1 - p10]], dtype=probs.dtype, device=probs.device)
    p = probs.reshape((-1,) + (2,) * n_qubits)
    for q in range(n_qubits):
        p = torch.movedim(torch.tensordot(confusion, torch.movedim(p, q + 1, 0), dims=([1], [0])), 0, q + 1)
    return p.reshape(probs.shape)


def sample_frequencies(probs: Tensor, shots: int, generator: torch.Generator) -> Tensor:
    """Observed frequencies of each basis state in `shots` draws per row of probs (rows, 2^n)."""
    p = probs.detach().to("cpu", torch.float64).clamp_min(0)
    draws = torch.multinomial(p / p.sum(1, keepdim=True), shots, replacement=True, generator=generator)
    counts = torch.zeros_like(p).scatter_add_(1, draws, torch.ones_like(draws, dtype=p.dtype))
    return (counts / shots).to(probs.device, probs.dtype)


ProbabilityFn = Callable[[Circuit, Tensor], Tensor]  # (circuit, angles (rows, columns)) -> (rows, 2^n)


class Estimator:
    """Expectation values of an unrolled circuit's observables from basis-state probabilities: exact, or from
    `shots` samples, with optional readout error."""

    def __init__(self, unrolled: Unrolled, probabilities: ProbabilityFn, shots: int | None = None,
                 readout: tuple[float, float] = (0.0, 0.0), seed: int = 0):
        c = unrolled.circuit
        self.n_qubits, self.shots, self.readout, self.probabilities = c.n_qubits, shots, readout, probabilities
        self.groups = [(rotated(c, [c.observables[i] for i in g]), g) for g in measurement_groups(c.observables)]
        self.signs = [torch.as_tensor(parity_signs(c.n_qubits, [c.observables[i] for i in g])) for _, g in self.groups]
        self.generator = torch.Generator().manual_seed(seed)
        self.n_outputs = len(c.observables)

    def __call__(self, angles: Tensor) -> Tensor:
        """(rows, n_outputs) estimates for angles (rows, columns)."""
        out = angles.new_zeros(angles.shape[0], self.n_outputs)
        for (circuit, members), signs in zip(self.groups, self.signs):
            probs = readout_probabilities(self.probabilities(circuit, angles), self.n_qubits, *self.readout)
            if self.shots:
                probs = sample_frequencies(probs, self.shots, self.generator)
            out[:, members] = probs @ signs.to(probs.device, probs.dtype)
        return out


class ParameterShift(torch.autograd.Function):
    """Estimates forward; backward by the parameter-shift rule, every shifted circuit estimated the same way."""

    @staticmethod
    def forward(ctx: Any, angles: Tensor, estimator: Estimator, rules: tuple[ShiftRule, ...]) -> Tensor:
        ctx.save_for_backward(angles)
        ctx.estimator, ctx.rules = estimator, rules
        with torch.no_grad():
            return estimator(angles)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        (angles,) = ctx.saved_tensors
        terms = [(m, shift, coeff) for m, rule in enumerate(ctx.rules) for shift, coeff in rule]
        grad = torch.zeros_like(angles)
        if not terms:
            return grad, None, None
        batch, columns = angles.shape
        shifted = angles.unsqueeze(0).repeat(len(terms), 1, 1)
        cols = torch.tensor([m for m, _, _ in terms], device=angles.device)
        shifts = torch.tensor([s for _, s, _ in terms], dtype=angles.dtype, device=angles.device)
        shifted[torch.arange(len(terms)), :, cols] += shifts[:, None]
        with torch.no_grad():
            values = ctx.estimator(shifted.reshape(-1, columns)).reshape(len(terms), batch, -1)
        coeffs = torch.tensor([c for _, _, c in terms], dtype=angles.dtype, device=angles.device)
        per_term = (values * grad_out.unsqueeze(0)).sum(-1) * coeffs[:, None]  # (terms, batch)
        grad.index_add_(1, cols, per_term.T)
        return grad, None, None


def shift_rules(unrolled: Unrolled) -> tuple[ShiftRule, ...]:
    """The shift rule of every column; constant parameters get none (they need no gradient)."""
    return tuple(rule if p.source != "const" else () for p, rule in zip(unrolled.sources, unrolled.rules))
