"""The built-in engine agrees with PennyLane default.qubit on values and gradients (float64)."""
from __future__ import annotations

import random

import pytest
import torch
from support.circuits import random_circuit
from support.pennylane_reference import reference_expvals

from qtransfer import (
    Circuit,
    CompiledCircuit,
    Gate,
    Observable,
    const,
    inp,
    make_circuit,
    weight,
)
from qtransfer.quantum.circuits import GATES
from qtransfer.quantum.statevector import apply_gate, expval, probabilities, zero_state

TOL = 1e-10
METHODS = ["dense", "fused", "gates"]


def _observables(n: int) -> tuple[Observable, ...]:
    """Z, X and Y on each wire and ZZ / XY products on neighbours: every measurement kind."""
    obs = [Observable(p, (i,)) for i in range(n) for p in "ZXY"]
    obs += [Observable("ZZ", (i, i + 1)) for i in range(n - 1)]
    obs += [Observable("XY", (i + 1, i)) for i in range(n - 1)]
    return tuple(obs)


def _assert_matches_pennylane(circuit: Circuit, batch: int, method: str, seed: int = 0) -> None:
    """Values and gradients wrt inputs and weights equal PennyLane's to TOL."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3).requires_grad_()
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3).requires_grad_()
    coef = torch.randn(batch, circuit.n_outputs, generator=g, dtype=torch.float64)

    ours = CompiledCircuit(circuit, dtype=torch.float64, method=method)(x if circuit.n_inputs else None, w)

    def anchor():
        return 0 * (x.sum() + w.sum())

    gx, gw = torch.autograd.grad((ours * coef).sum() + anchor(), [x, w])
    ref = reference_expvals(circuit, x if circuit.n_inputs else None, w).expand(batch, -1)
    rx, rw = torch.autograd.grad((ref * coef).sum() + anchor(), [x, w])

    torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)
    torch.testing.assert_close(gx, rx, atol=TOL, rtol=0)
    torch.testing.assert_close(gw, rw, atol=TOL, rtol=0)


def _single_gate(name: str, source: str) -> Circuit:
    """A 3-qubit circuit that prepares a generic state, then applies `name` with params from `source`."""
    spec = GATES[name]
    prep = [Gate("RX", (i,), (const(0.3 + 0.4 * i),)) for i in range(3)]
    prep += [Gate("RY", (i,), (const(0.7 - 0.2 * i),)) for i in range(3)]
    make = {"input": inp, "weight": weight}[source]
    params = tuple(make(k) for k in range(spec.n_params))
    wires = (2, 0)[: spec.n_wires]  # reversed wire order checks the wire convention
    n = spec.n_params if source == "input" else 0
    return Circuit(3, max(n, 1), (spec.n_params,), (*prep, Gate(name, wires, params)), _observables(3))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("source", ["input", "weight"])
@pytest.mark.parametrize("name", list(GATES))
def test_every_gate_alone_matches_pennylane(name: str, source: str, method: str) -> None:
    # "input" feeds the gate one parameter value per sample; "weight" one value for the batch.
    _assert_matches_pennylane(_single_gate(name, source), batch=5, method=method)


@pytest.mark.parametrize("seed", range(60))
def test_random_circuits_match_pennylane(seed: int) -> None:
    rng = random.Random(seed)
    circuit = random_circuit(rng, n_qubits=1 + seed % 8)
    for method in METHODS:
        _assert_matches_pennylane(circuit, batch=3, method=method, seed=seed)


@pytest.mark.parametrize("template", ["tutorial", "strongly_entangling", "basic_entangler", "ring_cz"])
@pytest.mark.parametrize("method", METHODS)
def test_templates_match_pennylane(template: str, method: str) -> None:
    _assert_matches_pennylane(make_circuit(template, 5, 3), batch=4, method=method)


def test_real_path_equals_complex_path() -> None:
    circuit = make_circuit("tutorial", 6, 4)
    assert circuit.real
    x = torch.rand(7, 6, dtype=torch.float64) * 3
    w = torch.randn(circuit.n_weights, dtype=torch.float64)
    real = CompiledCircuit(circuit, dtype=torch.float64)
    assert not real.dtype.is_complex
    state = zero_state(6, 7, dtype=torch.complex128)
    for g in circuit.gates:
        params = [x[:, p.index] if p.source == "input" else w[p.index].expand(7) for p in g.params]
        state = apply_gate(state, g.name, g.wires, torch.stack(params, 1) if params else None)
    complex_out = torch.stack([expval(state, o) for o in circuit.observables], 1)
    torch.testing.assert_close(real(x, w), complex_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(real.state(x, w).to(torch.complex128), state, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_stays_normalized(method: str, dtype: torch.dtype) -> None:
    circuit = random_circuit(random.Random(7), n_qubits=5)
    x = torch.randn(16, circuit.n_inputs, dtype=dtype) * 3
    w = torch.randn(circuit.n_weights, dtype=dtype) * 3
    state = CompiledCircuit(circuit, dtype=dtype, method=method).state(x, w)
    norms = probabilities(state).sum(1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=tol, rtol=0)


def test_float32_by_default_and_close_to_float64() -> None:
    circuit = make_circuit("strongly_entangling", 4, 3)
    x, w = torch.rand(8, 4) * 3, torch.randn(circuit.n_weights)
    out32 = CompiledCircuit(circuit)(x, w)
    out64 = CompiledCircuit(circuit, dtype=torch.float64)(x.double(), w.double())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=0)


def test_outputs_are_deterministic_under_a_seed() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(3)
        circuit = make_circuit("tutorial", 4, 6)
        x, w = torch.rand(8, 4), torch.randn(circuit.n_weights)
        return CompiledCircuit(circuit)(x, w)

    assert torch.equal(run(), run())


def test_probabilities_order_follows_requested_wires() -> None:
    # X on wire 0 of |000>: P(wire0=1) = 1; asking for wires (2, 0) puts wire 0 last.
    state = apply_gate(zero_state(3, dtype=torch.float64), "X", [0])
    assert probabilities(state, [0]).tolist() == [[0.0, 1.0]]
    assert probabilities(state, [2, 0]).tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_bad_shapes_name_what_is_expected() -> None:
    compiled = CompiledCircuit(make_circuit("tutorial", 4, 2))
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 4\)"):
        compiled(torch.zeros(2, 3), torch.zeros(8))
    with pytest.raises(ValueError, match=r"needs 8 \(shape \(2, 4\)\)"):
        compiled(torch.zeros(2, 4), torch.zeros(7))
    with pytest.raises(ValueError, match="method must be"):
        CompiledCircuit(make_circuit("tutorial", 2, 1), method="fast")
