"""The dressed quantum head is the tutorial's DressedQuantumNet, batched; classical heads share its shape."""
from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch
from torch import nn

from qtransfer import DressedClassicalHead, DressedQuantumHead, LinearHead, create_head

n_qubits, q_depth, q_delta = 4, 6, 0.01


def _tutorial_quantum_net():
    """The tutorial's circuit, as written there (one sample per call)."""
    dev = qml.device("default.qubit", wires=n_qubits)

    def entangling_layer(nqubits):
        for i in range(0, nqubits - 1, 2):
            qml.CNOT(wires=[i, i + 1])
        for i in range(1, nqubits - 1, 2):
            qml.CNOT(wires=[i, i + 1])

    @qml.qnode(dev, interface="torch")
    def quantum_net(q_input_features, q_weights_flat):
        q_weights = q_weights_flat.reshape(q_depth, n_qubits)
        for idx in range(n_qubits):
            qml.Hadamard(wires=idx)
        for idx, element in enumerate(q_input_features):
            qml.RY(element, wires=idx)
        for k in range(q_depth):
            entangling_layer(n_qubits)
            for idx, element in enumerate(q_weights[k]):
                qml.RY(element, wires=idx)
        return tuple(qml.expval(qml.PauliZ(position)) for position in range(n_qubits))

    return quantum_net


class DressedQuantumNet(nn.Module):
    """The tutorial's module; the per-sample loop keeps the dtype instead of forcing float32."""

    def __init__(self):
        super().__init__()
        self.pre_net = nn.Linear(512, n_qubits)
        self.q_params = nn.Parameter(q_delta * torch.randn(q_depth * n_qubits))
        self.post_net = nn.Linear(n_qubits, 2)
        self.quantum_net = _tutorial_quantum_net()

    def forward(self, input_features):
        q_in = torch.tanh(self.pre_net(input_features)) * np.pi / 2.0
        q_out = torch.stack([torch.stack(self.quantum_net(elem, self.q_params)) for elem in q_in])
        return self.post_net(q_out.to(q_in.dtype))


def test_same_seed_gives_the_tutorials_initial_weights() -> None:
    torch.manual_seed(42)
    reference = DressedQuantumNet().state_dict()
    torch.manual_seed(42)
    ours = DressedQuantumHead(512, 2).state_dict()
    assert list(ours) == list(reference)
    for key in ours:
        assert torch.equal(ours[key], reference[key]), key


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_logits_and_gradients_equal_the_tutorials(dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(0)
    reference = DressedQuantumNet().to(dtype)
    with torch.no_grad():  # larger weights than q_delta so every gate matters
        reference.q_params.normal_(0, 1)
    head = DressedQuantumHead(512, 2).to(dtype)
    head.load_state_dict(reference.state_dict())  # a tutorial state_dict loads unchanged

    features = torch.randn(8, 512, dtype=dtype)
    labels = torch.randint(0, 2, (8,))
    grads = []
    for model in (reference, head):
        logits = model(features)
        loss = nn.functional.cross_entropy(logits, labels)
        grads.append((logits, torch.autograd.grad(loss, list(model.parameters()))))
    (ref_logits, ref_grads), (our_logits, our_grads) = grads
    assert our_logits.dtype == dtype
    torch.testing.assert_close(our_logits, ref_logits, atol=tol, rtol=0)
    for ours, ref in zip(our_grads, ref_grads):
        torch.testing.assert_close(ours, ref, atol=tol, rtol=0)


def test_q_params_is_flat_and_read_as_depth_by_qubits() -> None:
    head = DressedQuantumHead(512, 2, n_qubits=3, depth=5)
    assert head.q_params.shape == (15,)
    assert head.circuit.weight_shape == (5, 3)
    assert head.pre_net.out_features == 3 and head.post_net.in_features == 3


def test_classical_head_has_the_same_shape_with_a_classical_layer() -> None:
    head = create_head("classical", 512, 2, n_qubits=4, depth=6, template="tutorial")
    assert isinstance(head, DressedClassicalHead)
    assert [tuple(p.shape) for p in head.parameters()] == [(4, 512), (4,), (4, 4), (4,), (2, 4), (2,)]
    assert head(torch.randn(3, 512)).shape == (3, 2)


def test_linear_head_and_registry_errors() -> None:
    head = create_head("linear", 512, 3, n_qubits=4, depth=2)
    assert isinstance(head, LinearHead) and head(torch.randn(2, 512)).shape == (2, 3)
    with pytest.raises(ValueError, match="Did you mean 'quantum'"):
        create_head("quantun", 512, 2)
    with pytest.raises(TypeError, match="unknown settings"):
        create_head("classical", 512, 2, qubits=4)


def test_quantum_head_trains_on_a_separable_task() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 16)
    y = (x[:, 0] > 0).long()
    head = DressedQuantumHead(16, 2, depth=2)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
    assert (head(x).argmax(1) == y).float().mean() > 0.9
