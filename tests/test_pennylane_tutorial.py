"""The reference tutorial's own code (../shared/seed/), only the device name changed, trains on qtransfer.qubit
with the losses it has on default.qubit."""
from __future__ import annotations

import numpy as np
import pytest

qml = pytest.importorskip("pennylane")
import torch  # noqa: E402
from torch import nn, optim  # noqa: E402
from torch.optim import lr_scheduler  # noqa: E402

n_qubits = 4
step = 0.0004
batch_size = 4
q_depth = 6
gamma_lr_scheduler = 0.1
q_delta = 0.01


def tutorial_model(device_name: str) -> nn.Module:
    """The tutorial's cells 4-10 verbatim but for the device name (ResNet18 replaced by its 512 features)."""
    dev = qml.device(device_name, wires=n_qubits)

    def H_layer(nqubits):
        for idx in range(nqubits):
            qml.Hadamard(wires=idx)

    def RY_layer(w):
        for idx, element in enumerate(w):
            qml.RY(element, wires=idx)

    def entangling_layer(nqubits):
        for i in range(0, nqubits - 1, 2):
            qml.CNOT(wires=[i, i + 1])
        for i in range(1, nqubits - 1, 2):
            qml.CNOT(wires=[i, i + 1])

    @qml.qnode(dev, interface="torch")
    def quantum_net(q_input_features, q_weights_flat):
        q_weights = q_weights_flat.reshape(q_depth, n_qubits)
        H_layer(n_qubits)
        RY_layer(q_input_features)
        for k in range(q_depth):
            entangling_layer(n_qubits)
            RY_layer(q_weights[k])
        exp_vals = [qml.expval(qml.PauliZ(position)) for position in range(n_qubits)]
        return tuple(exp_vals)

    class DressedQuantumNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre_net = nn.Linear(512, n_qubits)
            self.q_params = nn.Parameter(q_delta * torch.randn(q_depth * n_qubits))
            self.post_net = nn.Linear(n_qubits, 2)

        def forward(self, input_features):
            pre_out = self.pre_net(input_features)
            q_in = torch.tanh(pre_out) * np.pi / 2.0
            q_out = torch.Tensor(0, n_qubits)
            for elem in q_in:
                q_out_elem = torch.hstack(quantum_net(elem, self.q_params)).float().unsqueeze(0)
                q_out = torch.cat((q_out, q_out_elem))
            return self.post_net(q_out)

    torch.manual_seed(42)
    return DressedQuantumNet()


def train_losses(device_name: str, features: torch.Tensor, labels: torch.Tensor, epochs: int) -> list[float]:
    """The tutorial's training step (Adam, StepLR, cross-entropy, batches of 4), its loss per batch."""
    model = tutorial_model(device_name)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=step)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=10, gamma=gamma_lr_scheduler)
    losses = []
    for _ in range(epochs):
        model.train()
        for i in range(0, len(features), batch_size):
            optimizer.zero_grad()
            loss = criterion(model(features[i : i + batch_size]), labels[i : i + batch_size])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    return losses


def test_tutorial_code_trains_on_the_engine_with_default_qubit_losses():
    g = torch.Generator().manual_seed(3)
    features, labels = torch.randn(8, 512, generator=g) * 2, torch.randint(0, 2, (8,), generator=g)
    ours = train_losses("qtransfer.qubit", features, labels, epochs=2)
    reference = train_losses("default.qubit", features, labels, epochs=2)
    assert len(ours) == 4
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)  # float32 model, float64 circuits
    assert ours[-1] != ours[0]  # it trained
