"""qtransfer.qubit and qtransfer.mixed, PennyLane devices on the engine, against default.qubit / default.mixed."""
from __future__ import annotations

import numpy as np
import pytest

qml = pytest.importorskip("pennylane")
import torch  # noqa: E402

from qtransfer.devices import translate  # noqa: E402


def tutorial_layer(n: int, depth: int):
    """The tutorial's circuit as a QNode body: H layer, RY(x) embedding, depth x [CNOT even, CNOT odd, RY(w)]."""

    def circuit(inputs, weights):
        for i in range(n):
            qml.Hadamard(wires=i)
            qml.RY(inputs[..., i], wires=i)
        for k in range(depth):
            for i in list(range(0, n - 1, 2)) + list(range(1, n - 1, 2)):
                qml.CNOT(wires=[i, i + 1])
            for i in range(n):
                qml.RY(weights[k, i], wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return circuit


def run_with_grads(device, circuit, x, w, **qnode_kwargs):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    out = torch.stack(qml.QNode(circuit, device, interface="torch", **qnode_kwargs)(x, w), -1)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), x.grad, w.grad


@pytest.mark.parametrize("n", [4, 8])  # dense and fused paths
def test_broadcast_tutorial_circuit_matches_default_qubit_values_and_gradients(n):
    torch.manual_seed(0)
    x, w = torch.rand(5, n, dtype=torch.float64) * 3, torch.rand(3, n, dtype=torch.float64) * 3
    circuit = tutorial_layer(n, 3)
    ref = run_with_grads(qml.device("default.qubit", wires=n), circuit, x, w, diff_method="backprop")
    dev = qml.device("qtransfer.qubit", wires=n)
    for kwargs in ({"diff_method": "backprop"}, {"diff_method": "adjoint"},
                   {"diff_method": "adjoint", "device_vjp": True}, {"diff_method": "best"}):
        got = run_with_grads(dev, circuit, x, w, **kwargs)
        for a, b in zip(got, ref):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=str(kwargs))


def test_one_compiled_circuit_per_structure_and_one_engine_call_per_broadcast_tape(monkeypatch):
    n = 5
    dev = qml.device("qtransfer.qubit", wires=n)
    node = qml.QNode(tutorial_layer(n, 2), dev, interface="torch", diff_method="backprop")
    calls = []
    original = translate.CompiledCircuit.__call__
    monkeypatch.setattr(translate.CompiledCircuit, "__call__",
                        lambda self, *a: calls.append(a[0].shape) or original(self, *a))
    node(torch.rand(7, n), torch.rand(2, n))
    size = len(translate._compiled)
    node(torch.rand(7, n), torch.rand(2, n))
    assert calls == [(7, n), (7, n)]  # the broadcast axis is the engine's batch: one call per tape
    assert len(translate._compiled) == size  # new parameter values, same compiled circuit


def mixed_bag(x, w, mid_measure=True):
    """Gates the engine lacks (decomposed), a unitary, a diagonal unitary, a mid-circuit measurement."""
    qml.RX(x, wires=0)
    qml.Toffoli(wires=[0, 1, 2])
    qml.RY(w[0], wires=1)
    qml.QubitUnitary(qml.matrix(qml.Rot(0.1, 0.2, 0.3, wires=0) @ qml.RX(0.7, wires=1)), wires=[2, 1])
    qml.DiagonalQubitUnitary(np.exp(1j * np.array([0.1, 0.5, -0.3, 0.9])), wires=[0, 2])
    qml.CRot(w[1], 0.2, w[0], wires=[1, 0])
    if mid_measure:  # deferral takes a wire: PennyLane refuses state() with it
        qml.cond(qml.measure(1), qml.PauliY)(wires=2)
    qml.MultiRZ(w[1], wires=[0, 1, 2])
    qml.GlobalPhase(0.4)


MEASUREMENTS = {
    "expval": lambda A: qml.expval(qml.PauliX(0) @ qml.PauliY(2)),
    "hamiltonian": lambda A: qml.expval(
        qml.Hamiltonian([0.3, -1.2, 0.5], [qml.PauliZ(0), qml.PauliX(1) @ qml.PauliX(2), qml.Identity(1)])),
    "hermitian": lambda A: qml.expval(qml.Hermitian(A, wires=[1])),
    "var": lambda A: qml.var(qml.PauliZ(1) @ qml.PauliX(0)),
    "probs": lambda A: qml.probs(wires=[2, 0]),
    "state": lambda A: qml.state(),
    "density_matrix": lambda A: qml.density_matrix(wires=[1, 2]),
}


@pytest.mark.parametrize("measurement", MEASUREMENTS)
def test_measurements_match_default_qubit_with_decomposed_gates_and_mid_circuit_measurement(measurement):
    A = np.array([[1.0, 0.3 - 0.2j], [0.3 + 0.2j, -0.5]])

    def circuit(x, w):
        mixed_bag(x, w, mid_measure=measurement != "state")
        return MEASUREMENTS[measurement](A)

    x, w = np.array(0.37), np.array([0.5, -1.1])
    got = qml.QNode(circuit, qml.device("qtransfer.qubit", wires=4))(x, w)
    ref = qml.QNode(circuit, qml.device("default.qubit", wires=4))(x, w)
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_parameter_shift_and_adjoint_under_autograd_match_default_qubit():
    from pennylane import numpy as pnp

    def circuit(w):
        mixed_bag(0.2, w)
        return qml.expval(qml.PauliZ(0) @ qml.PauliZ(1)), qml.probs(wires=[2])

    w = pnp.array([0.5, -1.1], requires_grad=True)
    ref = qml.jacobian(lambda w: pnp.hstack(qml.QNode(circuit, qml.device("default.qubit", wires=4))(w)))(w)
    for diff in ("parameter-shift", "finite-diff", "adjoint", "backprop"):
        node = qml.QNode(circuit, qml.device("qtransfer.qubit", wires=4), diff_method=diff)
        got = qml.jacobian(lambda w, node=node: pnp.hstack(node(w)))(w)
        np.testing.assert_allclose(got, ref, atol=1e-5 if diff == "finite-diff" else 1e-9, err_msg=diff)


def test_shots_are_seeded_and_estimate_the_exact_values():
    def circuit(x):
        qml.RX(x, wires=0)
        qml.CNOT(wires=[0, 1])
        return qml.sample(wires=[0, 1]), qml.counts(wires=[0]), qml.expval(qml.PauliZ(1)), qml.probs(wires=[0])

    runs = [qml.QNode(circuit, qml.device("qtransfer.qubit", wires=2, shots=4000, seed=7))(1.1) for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # same seed, same samples
    samples, counts, z1, p0 = runs[0]
    assert samples.shape == (4000, 2) and np.all(samples[:, 0] == samples[:, 1])  # a Bell-like pair
    assert counts["0"] + counts["1"] == 4000
    assert abs(z1 - np.cos(1.1)) < 0.05 and abs(p0[0] - np.cos(0.55) ** 2) < 0.03
    other = qml.QNode(circuit, qml.device("qtransfer.qubit", wires=2, shots=4000, seed=8))(1.1)
    assert not np.array_equal(other[0], samples)


def test_float32_on_request():
    circuit = tutorial_layer(4, 2)
    x, w = torch.rand(3, 4, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    dev32 = qml.device("qtransfer.qubit", wires=4, dtype="float32")
    out32 = torch.stack(qml.QNode(circuit, dev32, interface="torch")(x, w))
    out64 = torch.stack(qml.QNode(circuit, qml.device("qtransfer.qubit", wires=4), interface="torch")(x, w))
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=0)


@pytest.mark.parametrize("diagonal", [False, True])  # True: every expectation read from the diagonal alone
def test_mixed_channels_match_default_mixed_values_and_gradients(diagonal):
    kraus = [np.sqrt(0.9) * np.eye(2), np.sqrt(0.1) * np.array([[0, 1], [1, 0]])]

    def circuit(x, w):
        qml.DepolarizingChannel(0.05, wires=0)  # a channel before any gate
        for i in range(3):
            qml.Hadamard(wires=i)
            qml.RY(x[..., i], wires=i)
        qml.CNOT(wires=[0, 1])
        qml.AmplitudeDamping(0.1, wires=1)
        qml.CRX(w[0], wires=[1, 2])
        qml.PhaseDamping(0.2, wires=2)
        qml.BitFlip(0.03, wires=0)
        qml.PhaseFlip(0.1, wires=1)
        qml.QubitChannel(kraus, wires=2)
        qml.RX(w[1], wires=0)
        if diagonal:
            return qml.expval(qml.PauliZ(0)), qml.expval(0.5 * qml.PauliZ(1) @ qml.PauliZ(2) - qml.PauliZ(2))
        return qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliY(1) @ qml.PauliX(2)), qml.probs(wires=[0, 2])

    x = torch.rand(2, 3, dtype=torch.float64)
    results = []
    for name in ("qtransfer.mixed", "default.mixed"):
        w = torch.tensor([0.3, -0.8], dtype=torch.float64, requires_grad=True)
        out = qml.QNode(circuit, qml.device(name, wires=3), interface="torch", diff_method="backprop")(x, w)
        (out[0].sum() + 2 * out[1].sum() + (0 if diagonal else out[2][:, 1].sum())).backward()
        results.append((*(o.detach() for o in out), w.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_unknown_dtype_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="float64' or 'float32"):
        qml.device("qtransfer.qubit", wires=2, dtype="float16")


@pytest.mark.parametrize("name, n", [("qtransfer.qubit", 8), ("qtransfer.mixed", 2)])  # the fused engine's runs
def test_a_run_can_be_differentiated_twice_as_torch_jacobians_do(name, n):
    @qml.qnode(qml.device(name, wires=n), diff_method="backprop", interface="torch")
    def circuit(x, y):
        qml.RX(x, wires=0)
        qml.RY(y, wires=1)
        qml.CNOT(wires=[0, 1])
        return qml.probs(wires=[1])

    x, y = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.543, -0.654))
    dx, dy = torch.autograd.functional.jacobian(circuit, (x, y))  # one backward pass per output entry
    a, b = 0.543, -0.654
    torch.testing.assert_close(dx, torch.tensor([-1.0, 1.0], dtype=torch.float64) * np.sin(a) * np.cos(b) / 2)
    torch.testing.assert_close(dy, torch.tensor([-1.0, 1.0], dtype=torch.float64) * np.cos(a) * np.sin(b) / 2)
