"""Fuzzing circuit descriptions: random valid circuits of 1-4 qubits over every gate the engine knows, with inputs,
weights and constants as parameters, simulate to normalised states whose expectation values are PennyLane's
(default.qubit, float64) by every method; random invalid ones are refused with a message when they are made, never
with an IndexError or a TypeError from deep inside the engine."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from support.fuzzing import HOSTILE_TEXT, bounded
from support.pennylane_reference import reference_expvals

from qtransfer import (
    Circuit,
    CompiledCircuit,
    Gate,
    Observable,
    Param,
    const,
    inp,
    weight,
)
from qtransfer.errors import InputError
from qtransfer.quantum.circuits import GATES
from qtransfer.quantum.statevector import probabilities

TOL = 1e-10
METHODS = ("dense", "fused", "gates")
ANGLES = st.floats(-2 * math.pi, 2 * math.pi, allow_nan=False)


@st.composite
def gates(draw: st.DrawFn, n_qubits: int, n_inputs: int, n_weights: int) -> Gate:
    name = draw(st.sampled_from([g for g, spec in GATES.items() if spec.n_wires <= n_qubits]))
    spec = GATES[name]
    wires = tuple(draw(st.permutations(range(n_qubits)))[: spec.n_wires])
    sources = [inp] * bool(n_inputs) + [weight] * bool(n_weights)
    params = []
    for _ in range(spec.n_params):
        make = draw(st.sampled_from([*sources, const]))
        limit = n_inputs if make is inp else n_weights
        params.append(make(draw(ANGLES)) if make is const else make(draw(st.integers(0, limit - 1))))
    return Gate(name, wires, tuple(params))


@st.composite
def observables(draw: st.DrawFn, n_qubits: int) -> Observable:
    wires = tuple(draw(st.permutations(range(n_qubits)))[: draw(st.integers(1, min(n_qubits, 3)))])
    return Observable("".join(draw(st.sampled_from("XYZ")) for _ in wires), wires)


@st.composite
def circuits(draw: st.DrawFn) -> Circuit:
    n = draw(st.integers(1, 4))
    n_inputs, n_weights = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    ops = draw(st.lists(gates(n, n_inputs, n_weights), max_size=14))
    obs = draw(st.lists(observables(n), min_size=1, max_size=3))
    return Circuit(n, n_inputs, (n_weights,), tuple(ops), tuple(obs))


@pytest.mark.slow
@bounded(25)
@given(circuit=circuits(), seed=st.integers(0, 2**16))
def test_random_valid_circuits_are_normalised_and_agree_with_pennylane(circuit: Circuit, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3
    w = torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3
    inputs = x if circuit.n_inputs else None
    reference = reference_expvals(circuit, inputs, w).expand(2, -1)
    for method in METHODS:
        sim = CompiledCircuit(circuit, dtype=torch.float64, method=method)
        norms = probabilities(sim.state(inputs, w)).sum(1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-12, rtol=0)
        torch.testing.assert_close(sim(inputs, w).expand(2, -1), reference, atol=TOL, rtol=0, msg=method)


# ---------------------------------------------------------------- invalid descriptions

def _first(gate_name: str) -> Gate:
    spec = GATES[gate_name]
    return Gate(gate_name, tuple(range(spec.n_wires)), tuple(weight(0) for _ in range(spec.n_params)))


BAD_WIRES = st.one_of(st.integers(-5, -1), st.integers(3, 2**70), st.sampled_from([1.5, 0.0, "0", None, (0,)]))
BAD_INDEX = st.one_of(st.integers(-(2**64), -1), st.integers(4, 2**64), st.sampled_from([0.5, "0", None, 1.0]))


@st.composite
def invalid_circuits(draw: st.DrawFn) -> tuple[str, object]:
    """What was broken, and a builder of a 3-qubit circuit (3 inputs, 4 weights) broken that way."""
    name = draw(st.sampled_from(sorted(GATES)))
    gate = _first(name)
    spec = GATES[name]
    obs = (Observable("Z", (0,)),)
    kind = draw(st.sampled_from(["wire", "duplicate", "name", "arity", "params", "index", "source", "const",
                                 "observable", "empty observable", "sizes"]))
    if kind == "wire":
        gate = replace(gate, wires=(*gate.wires[:-1], draw(BAD_WIRES)))
    elif kind == "duplicate":
        gate = replace(_first("CNOT" if spec.n_wires == 1 else name), wires=(1, 1))
    elif kind == "name":
        gate = replace(gate, name=draw(HOSTILE_TEXT.filter(lambda t: t not in GATES)))
    elif kind == "arity":
        gate = replace(gate, wires=tuple(range(draw(st.sampled_from([n for n in (0, 1, 2, 3) if n != spec.n_wires])))))
    elif kind == "params":
        count = draw(st.integers(0, 4).filter(lambda c: c != spec.n_params))
        gate = replace(gate, params=tuple(weight(0) for _ in range(count)))
    elif kind == "index":
        source = draw(st.sampled_from(["input", "weight"]))
        gate = replace(_first("RY"), params=(Param(source, index=draw(BAD_INDEX)),))  # type: ignore[arg-type]
    elif kind == "source":
        gate = replace(_first("RY"), params=(Param(draw(HOSTILE_TEXT), index=0),))  # type: ignore[arg-type]
    elif kind == "const":
        gate = replace(_first("RY"), params=(Param("const", value=draw(st.sampled_from(
            [math.nan, math.inf, -math.inf, "1", None]))),))  # type: ignore[arg-type]
    elif kind == "observable":
        obs = (draw(st.sampled_from([Observable("Q", (0,)), Observable("ZZ", (0,)), Observable("Z", (3,)),
                                     Observable("ZZ", (1, 1)), Observable("z", (0,)), Observable("Z", (0.0,))])),)
    elif kind == "empty observable":
        obs = (Observable("", ()),)
    else:
        n_qubits, n_inputs, shape = draw(st.sampled_from([(0, 3, (4,)), (-1, 3, (4,)), (3, -1, (4,)), (3, 3, (-4,)),
                                                          (3, 3, (2, -2)), (2.0, 3, (4,)), (3, 1.5, (4,)),
                                                          (3, 3, (4.0,))]))
        return kind, lambda: Circuit(n_qubits, n_inputs, shape, (_first("RY"),), obs)  # type: ignore[arg-type]
    return kind, lambda: Circuit(3, 3, (4,), (_first("H"), gate), obs)


@bounded(60)
@given(case=invalid_circuits())
def test_random_invalid_circuits_are_refused_with_a_message(case: tuple[str, object]) -> None:
    kind, build = case
    with pytest.raises(InputError) as refused:  # when it is made, not later inside the engine
        build()  # type: ignore[operator]
    message = str(refused.value)
    assert message and "\n" not in message, (kind, message)
