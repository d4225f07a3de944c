"""Circuit descriptions: templates equal PennyLane's own templates; bad circuits are refused clearly."""
from __future__ import annotations

import pennylane as qml
import pytest
import torch

from qtransfer import (
    Circuit,
    CompiledCircuit,
    Gate,
    Observable,
    inp,
    make_circuit,
    weight,
)


def _pennylane_template(name: str, n: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The template written with PennyLane's own layer templates."""
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch")
    def run():
        if name == "strongly_entangling":
            qml.AngleEmbedding(x, wires=range(n), rotation="Y")
            qml.StronglyEntanglingLayers(w, wires=range(n))
        else:
            qml.AngleEmbedding(x, wires=range(n), rotation="X")
            qml.BasicEntanglerLayers(w, wires=range(n), rotation=qml.RX)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return torch.stack(list(run()), -1)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("name", ["strongly_entangling", "basic_entangler"])
def test_templates_equal_pennylane_layer_templates(name: str, n: int) -> None:
    circuit = make_circuit(name, n, depth=3)
    x = torch.rand(n, dtype=torch.float64) * 3
    w = torch.randn(circuit.weight_shape, dtype=torch.float64)
    ours = CompiledCircuit(circuit, dtype=torch.float64)(x[None], w.flatten())[0]
    torch.testing.assert_close(ours, _pennylane_template(name, n, x, w), atol=1e-10, rtol=0)


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
