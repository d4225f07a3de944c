"""Circuit descriptions: every template equals PennyLane (its own templates, and gate by gate in values and
gradients); bad circuits are refused clearly."""
from __future__ import annotations

import math

import pennylane as qml
import pytest
import torch
from support.pennylane_reference import reference_expvals

from qtransfer import (
    Circuit,
    CompiledCircuit,
    Gate,
    Observable,
    inp,
    make_circuit,
    weight,
)
from qtransfer.quantum.circuits import TEMPLATES


def _tutorial_layers(x: torch.Tensor, w: torch.Tensor, n: int) -> None:
    for i in range(n):
        qml.Hadamard(i)
    qml.AngleEmbedding(x, wires=range(n), rotation="Y")
    for row in w:
        for i in [*range(0, n - 1, 2), *range(1, n - 1, 2)]:
            qml.CNOT([i, i + 1])
        qml.AngleEmbedding(row, wires=range(n), rotation="Y")


def _ring_cz_layers(x: torch.Tensor, w: torch.Tensor, n: int) -> None:
    for i in range(n):
        qml.Hadamard(i)
    qml.AngleEmbedding(x, wires=range(n), rotation="Y")
    ring = [] if n == 1 else [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)]
    for row in w:
        qml.AngleEmbedding(row, wires=range(n), rotation="Y")
        for pair in ring:
            qml.CZ(pair)


# Each template as PennyLane's own templates and operations build it, weights read in weight_shape.
PENNYLANE_TEMPLATES = {
    "tutorial": _tutorial_layers,
    "strongly_entangling": lambda x, w, n: (qml.AngleEmbedding(x, wires=range(n), rotation="Y"),
                                            qml.StronglyEntanglingLayers(w, wires=range(n))),
    "basic_entangler": lambda x, w, n: (qml.AngleEmbedding(x, wires=range(n), rotation="X"),
                                        qml.BasicEntanglerLayers(w, wires=range(n), rotation=qml.RX)),
    "ring_cz": _ring_cz_layers,
}


def _pennylane_template(name: str, n: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The template written with PennyLane's own layer templates."""

    @qml.qnode(qml.device("default.qubit", wires=n), interface="torch")
    def run():
        PENNYLANE_TEMPLATES[name](x, w, n)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return torch.stack(list(run()), -1)


def test_every_pennylane_rendering_names_a_template() -> None:
    assert set(PENNYLANE_TEMPLATES) <= set(TEMPLATES)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("name", sorted(PENNYLANE_TEMPLATES), ids=str)
def test_templates_equal_pennylane_layer_templates(name: str, n: int) -> None:
    circuit = make_circuit(name, n, depth=3)
    x = torch.rand(n, dtype=torch.float64) * 3
    w = torch.randn(circuit.weight_shape, dtype=torch.float64)
    ours = CompiledCircuit(circuit, dtype=torch.float64)(x[None], w.flatten())[0]
    torch.testing.assert_close(ours, _pennylane_template(name, n, x, w), atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------- every registered template

METHODS = ("dense", "fused", "gates")


def _values_and_gradients(run, x: torch.Tensor, w: torch.Tensor, cotangent: torch.Tensor) -> list[torch.Tensor]:
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = run(xs, ws)
    anchor = 0 * (xs.sum() + ws.sum())  # a weight no output reads still gets its zero gradient
    return [out.detach(), *torch.autograd.grad((out * cotangent).sum() + anchor, [xs, ws])]


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("entangle", [True, False], ids=["entangled", "control"])
@pytest.mark.parametrize("name", sorted(TEMPLATES), ids=str)
def test_every_template_equals_pennylane_default_qubit_in_values_and_gradients(
    name: str, entangle: bool, n: int
) -> None:
    circuit = make_circuit(name, n, depth=2, entangle=entangle)
    g = torch.Generator().manual_seed(n)
    x = (torch.rand(4, circuit.n_inputs, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    w = torch.randn(circuit.n_weights, generator=g, dtype=torch.float64)
    cotangent = torch.randn(4, circuit.n_outputs, generator=g, dtype=torch.float64)
    reference = _values_and_gradients(lambda xs, ws: reference_expvals(circuit, xs, ws), x, w, cotangent)
    assert reference[0].shape == (4, circuit.n_outputs) and reference[2].abs().max() > 1e-3
    for method in METHODS:
        engine = CompiledCircuit(circuit, dtype=torch.float64, method=method)
        ours = _values_and_gradients(engine, x, w, cotangent)
        for a, b, tol in zip(ours, reference, (1e-12, 1e-10, 1e-10)):
            torch.testing.assert_close(a, b, atol=tol, rtol=0, msg=lambda m, method=method: f"{method}: {m}")


@pytest.mark.parametrize("entangle", [True, False], ids=["entangled", "control"])
@pytest.mark.parametrize("name", sorted(TEMPLATES), ids=str)
def test_every_template_on_a_model_axis_equals_each_model_alone(name: str, entangle: bool) -> None:
    circuit = make_circuit(name, 3, depth=2, entangle=entangle)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 4, circuit.n_inputs, generator=g, dtype=torch.float64) * 3
    w = torch.randn(3, circuit.n_weights, generator=g, dtype=torch.float64)
    cotangent = torch.randn(3, 4, circuit.n_outputs, generator=g, dtype=torch.float64)
    engine = CompiledCircuit(circuit, dtype=torch.float64)
    stacked = _values_and_gradients(engine, x, w, cotangent)
    solo = _values_and_gradients(lambda xs, ws: torch.stack([engine(xs[k], ws[k]) for k in range(3)]), x, w, cotangent)
    assert stacked[0].shape == (3, 4, circuit.n_outputs)
    for a, b in zip(stacked, solo):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_tutorial_template_is_the_reference_circuit() -> None:
    c = make_circuit("tutorial", 4, 2)
    names = [(g.name, g.wires) for g in c.gates]
    assert names[:8] == [("H", (i,)) for i in range(4)] + [("RY", (i,)) for i in range(4)]
    layer = [("CNOT", (0, 1)), ("CNOT", (2, 3)), ("CNOT", (1, 2))] + [("RY", (i,)) for i in range(4)]
    assert names[8:] == layer * 2
    # weights read as (depth, n_qubits), row k feeding layer k
    assert [g.params[0].index for g in c.gates if g.params and g.params[0].source == "weight"] == list(range(8))
    assert c.weight_shape == (2, 4) and c.n_outputs == 4 and c.real


def test_depth_zero_keeps_only_the_embedding() -> None:
    c = make_circuit("tutorial", 3, 0)
    assert c.n_weights == 0 and [g.name for g in c.gates] == ["H"] * 3 + ["RY"] * 3


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Circuit(2, 1, (1,), (Gate("CNOT", (0, 0)),), (Observable("Z", (0,)),)), "must be distinct"),
        (lambda: Circuit(2, 1, (1,), (Gate("RY", (2,), (inp(0),)),), (Observable("Z", (0,)),)), r"in 0\.\.1"),
        (lambda: Circuit(2, 1, (1,), (Gate("RY", (0,), (weight(1),)),), (Observable("Z", (0,)),)), "weight index 1"),
        (lambda: Circuit(2, 1, (1,), (Gate("RY", (0,)),), (Observable("Z", (0,)),)), "needs 1 parameter"),
        (lambda: Circuit(2, 1, (1,), (Gate("CNOTT", (0, 1)),), (Observable("Z", (0,)),)), "Did you mean 'CNOT'"),
        (lambda: Circuit(2, 1, (1,), (), (Observable("Q", (0,)),)), "one of X, Y, Z"),
        (lambda: Circuit(2, 1, (1,), (), ()), "at least one observable"),
        (lambda: make_circuit("tutorail", 4, 6), "Did you mean 'tutorial'"),
        (lambda: make_circuit("tutorial", 0, 6), "n_qubits must be >= 1"),
        (lambda: make_circuit("tutorial", 4, -1), "depth must be >= 0"),
    ],
)
def test_bad_circuits_are_refused_with_the_reason(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
