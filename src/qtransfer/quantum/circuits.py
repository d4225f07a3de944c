"""Circuits as data: gates fed by inputs, trainable weights or constants, and named templates."""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from qtransfer.errors import InputError
from qtransfer.registry import Registry, unknown_name

Source = Literal["input", "weight", "const"]


@dataclass(frozen=True)
class GateSpec:
    """What the circuit layer needs to know about a gate: arity, parameter count, realness."""

    n_wires: int
    n_params: int
    real: bool


# Real gates have real matrices for every parameter value, so circuits made only of them
# can run in real arithmetic.
GATES: dict[str, GateSpec] = {
    "H": GateSpec(1, 0, True),
    "X": GateSpec(1, 0, True),
    "Y": GateSpec(1, 0, False),
    "Z": GateSpec(1, 0, True),
    "S": GateSpec(1, 0, False),
    "T": GateSpec(1, 0, False),
    "RX": GateSpec(1, 1, False),
    "RY": GateSpec(1, 1, True),
    "RZ": GateSpec(1, 1, False),
    "PhaseShift": GateSpec(1, 1, False),
    "Rot": GateSpec(1, 3, False),
    "CNOT": GateSpec(2, 0, True),
    "CZ": GateSpec(2, 0, True),
    "SWAP": GateSpec(2, 0, True),
    "CRX": GateSpec(2, 1, False),
    "CRY": GateSpec(2, 1, True),
    "CRZ": GateSpec(2, 1, False),
    "IsingXX": GateSpec(2, 1, False),
    "IsingYY": GateSpec(2, 1, False),
    "IsingZZ": GateSpec(2, 1, False),
}

PAULIS = "XYZ"


@dataclass(frozen=True)
class Param:
    """One gate parameter: input feature `index`, trainable weight `index` (flat), or constant `value`."""

    source: Source
    index: int = 0
    value: float = 0.0


def inp(index: int) -> Param:
    """Parameter read from input feature `index` (one value per sample)."""
    return Param("input", index=index)


def weight(index: int) -> Param:
    """Parameter read from the flat trainable weight vector at `index`."""
    return Param("weight", index=index)


def const(value: float) -> Param:
    """Fixed parameter."""
    return Param("const", value=float(value))


@dataclass(frozen=True)
class Gate:
    """A gate applied to `wires` with its parameters."""

    name: str
    wires: tuple[int, ...]
    params: tuple[Param, ...] = ()

    @property
    def kind(self) -> Source:
        """'input' if any parameter is an input, else 'weight' if any is a weight, else 'const'."""
        sources = {p.source for p in self.params}
        for kind in ("input", "weight"):
            if kind in sources:
                return kind
        return "const"


@dataclass(frozen=True)
class Observable:
    """A Pauli product such as ("Z", (0,)) or ("ZZ", (0, 1)); its expectation is one output."""

    paulis: str
    wires: tuple[int, ...]

    @property
    def diagonal(self) -> bool:
        """True when made only of Z (diagonal in the computational basis)."""
        return set(self.paulis) <= {"Z"}


@dataclass(frozen=True)
class Circuit:
    """A qubit circuit: gates in order, then expectation values of observables."""

    n_qubits: int
    n_inputs: int
    weight_shape: tuple[int, ...]
    gates: tuple[Gate, ...]
    observables: tuple[Observable, ...]
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        _check_sizes(self.n_qubits, self.n_inputs, self.weight_shape)
        for i, g in enumerate(self.gates):
            _check_gate(g, i, self.n_qubits, self.n_inputs, self.n_weights)
        if not self.observables:
            raise InputError("a circuit needs at least one observable to measure")
        for o in self.observables:
            if not o.paulis or len(o.paulis) != len(o.wires) or set(o.paulis) - set(PAULIS):
                raise InputError(f"observable {o} must give one of X, Y, Z per wire")
            _check_wires(o.wires, self.n_qubits, f"observable {o}")

    def __hash__(self) -> int:
        # Hashed on every simulation (compiled circuits are cached by circuit): once per circuit, not per call.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.n_qubits, self.n_inputs, self.weight_shape, self.gates, self.observables))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def n_weights(self) -> int:
        """Number of trainable weights (size of the flat weight vector)."""
        return math.prod(self.weight_shape)

    @property
    def n_outputs(self) -> int:
        """Number of expectation values the circuit returns."""
        return len(self.observables)

    @property
    def real(self) -> bool:
        """True when every gate and observable is real, so real arithmetic is exact."""
        return all(GATES[g.name].real for g in self.gates) and all(
            "Y" not in o.paulis for o in self.observables
        )


def _count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy's integers too


def _check_sizes(n_qubits: int, n_inputs: int, weight_shape: tuple[int, ...]) -> None:
    if not _count(n_qubits) or n_qubits < 1:
        raise InputError(f"n_qubits must be an integer >= 1, got {n_qubits!r}")
    if not _count(n_inputs) or n_inputs < 0:
        raise InputError(f"n_inputs must be an integer >= 0, got {n_inputs!r}")
    if not isinstance(weight_shape, tuple) or not all(_count(d) and d >= 0 for d in weight_shape):
        raise InputError(f"weight_shape must be a tuple of integers >= 0, got {weight_shape!r}")


def _check_wires(wires: tuple[int, ...], n_qubits: int, what: str) -> None:
    if not isinstance(wires, tuple) or not all(_count(w) for w in wires):
        raise InputError(f"{what}: wires must be a tuple of integers, got {wires!r}")
    if len(set(wires)) != len(wires) or any(not 0 <= w < n_qubits for w in wires):
        raise InputError(f"{what}: wires {wires} must be distinct and in 0..{n_qubits - 1}")


def _check_gate(g: Gate, i: int, n_qubits: int, n_inputs: int, n_weights: int) -> None:
    if not isinstance(g.name, str) or g.name not in GATES:
        raise unknown_name("gate", str(g.name), GATES, where=f"gate {i}")
    spec = GATES[g.name]
    what = f"gate {i} ({g.name})"
    _check_wires(g.wires, n_qubits, what)
    if len(g.wires) != spec.n_wires:
        raise InputError(f"{what}: needs {spec.n_wires} wire(s), got {g.wires}")
    if len(g.params) != spec.n_params:
        raise InputError(f"{what}: needs {spec.n_params} parameter(s), got {len(g.params)}")
    for p in g.params:
        _check_param(p, what, n_inputs, n_weights)


def _check_param(p: Param, what: str, n_inputs: int, n_weights: int) -> None:
    if not isinstance(p, Param) or p.source not in ("input", "weight", "const"):
        raise InputError(f"{what}: a parameter must be inp(i), weight(i) or const(value), got {p!r}")
    if p.source == "const":
        if not isinstance(p.value, numbers.Real) or isinstance(p.value, bool) or not math.isfinite(p.value):
            raise InputError(f"{what}: a constant parameter must be a finite number, got {p.value!r}")
        return
    limit = n_inputs if p.source == "input" else n_weights
    if not _count(p.index) or not 0 <= p.index < limit:
        raise InputError(f"{what}: {p.source} index {p.index!r} out of range 0..{limit - 1}")


TemplateFn = Callable[[int, int], Circuit]
TEMPLATES: Registry[TemplateFn] = Registry("template")


def register_template(name: str) -> Callable[[TemplateFn], TemplateFn]:
    """Decorator: register `fn(n_qubits, depth) -> Circuit` under `name`."""
    return TEMPLATES.register(name)


def make_circuit(template: str, n_qubits: int, depth: int, entangle: bool = True) -> Circuit:
    """Build the named template circuit for `n_qubits` qubits and `depth` variational layers (entangle=False:
    without its multi-qubit gates)."""
    build = TEMPLATES.lookup(template)
    if n_qubits < 1:
        raise InputError(f"n_qubits must be >= 1, got {n_qubits}")
    if depth < 0:
        raise InputError(f"depth must be >= 0, got {depth}")
    circuit = build(n_qubits, depth)
    return circuit if entangle else without_entanglement(circuit)


def without_entanglement(circuit: Circuit) -> Circuit:
    """The control circuit: the same one-qubit gates, inputs, weights and observables, every multi-qubit gate
    removed, so each wire evolves alone and the outputs are products of one-wire functions."""
    gates = tuple(g for g in circuit.gates if len(g.wires) == 1)
    return replace(circuit, gates=gates, name=f"{circuit.name}:entangle=false")


def _z_outputs(n: int) -> tuple[Observable, ...]:
    return tuple(Observable("Z", (i,)) for i in range(n))


@register_template("tutorial")
def tutorial(n_qubits: int, depth: int) -> Circuit:
    """The reference circuit: H layer, RY(x) embedding, depth x [CNOT even, CNOT odd, RY(w)], <Z_i>."""
    n = n_qubits
    gates = [Gate("H", (i,)) for i in range(n)]
    gates += [Gate("RY", (i,), (inp(i),)) for i in range(n)]
    for k in range(depth):
        gates += [Gate("CNOT", (i, i + 1)) for i in range(0, n - 1, 2)]
        gates += [Gate("CNOT", (i, i + 1)) for i in range(1, n - 1, 2)]
        gates += [Gate("RY", (i,), (weight(k * n + i),)) for i in range(n)]
    return Circuit(n, n, (depth, n), tuple(gates), _z_outputs(n), name="tutorial")


@register_template("strongly_entangling")
def strongly_entangling(n_qubits: int, depth: int) -> Circuit:
    """RY angle embedding, then PennyLane's StronglyEntanglingLayers (Rot per wire, CNOT ring of range r)."""
    n = n_qubits
    gates = [Gate("RY", (i,), (inp(i),)) for i in range(n)]
    for k in range(depth):
        gates += [
            Gate("Rot", (i,), tuple(weight((k * n + i) * 3 + j) for j in range(3))) for i in range(n)
        ]
        if n > 1:
            r = k % (n - 1) + 1
            gates += [Gate("CNOT", (i, (i + r) % n)) for i in range(n)]
    return Circuit(n, n, (depth, n, 3), tuple(gates), _z_outputs(n), name="strongly_entangling")


@register_template("basic_entangler")
def basic_entangler(n_qubits: int, depth: int) -> Circuit:
    """RX angle embedding, then PennyLane's BasicEntanglerLayers (RX(w) per wire, CNOT ring)."""
    n = n_qubits
    gates = [Gate("RX", (i,), (inp(i),)) for i in range(n)]
    ring = [] if n == 1 else [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)]
    for k in range(depth):
        gates += [Gate("RX", (i,), (weight(k * n + i),)) for i in range(n)]
        gates += [Gate("CNOT", pair) for pair in ring]
    return Circuit(n, n, (depth, n), tuple(gates), _z_outputs(n), name="basic_entangler")


@register_template("ring_cz")
def ring_cz(n_qubits: int, depth: int) -> Circuit:
    """H layer and RY angle embedding, then depth x [RY(w) per wire, CZ ring]; real arithmetic."""
    n = n_qubits
    gates = [Gate("H", (i,)) for i in range(n)]
    gates += [Gate("RY", (i,), (inp(i),)) for i in range(n)]
    ring = [] if n == 1 else [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)]
    for k in range(depth):
        gates += [Gate("RY", (i,), (weight(k * n + i),)) for i in range(n)]
        gates += [Gate("CZ", pair) for pair in ring]
    return Circuit(n, n, (depth, n), tuple(gates), _z_outputs(n), name="ring_cz")
