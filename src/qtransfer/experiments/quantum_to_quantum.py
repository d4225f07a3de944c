"""Scheme QQ: a pretrained quantum network A, frozen, followed by a trainable quantum network B; a measurement
outcome is the prediction.

The paper's CV task B: Gaussian states (a coherent state α = 1 under a random rotation–squeezing–rotation)
against non-Gaussian ones (the one-photon Fock state under the same random Gaussian layer); network A the
pretrained one-layer circuit, network B three trainable layers; the vacuum probability p₀ of the output
decides (p₀ > 0.5: non-Gaussian); cutoff 15, batch 8, 500 Adam steps at lr 0.01.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer.models.quantum_backbones import GaussianityLayers, QubitNetwork
from qtransfer.quantum.circuits import make_circuit
from qtransfer.quantum.fock import FockState
from qtransfer.quantum.statevector import CompiledCircuit, probabilities

EPS = 1e-7  # as the notebook, inside the logarithms of p₀ and 1 − p₀


@dataclass
class GaussianityBatch:
    """Labels (1 = non-Gaussian) and the random Gaussian layer's parameters of one batch."""

    labels: Tensor
    squeezing: Tensor
    rotation1: Tensor
    rotation2: Tensor

    def states(self, cutoff: int) -> FockState:
        """Input states: |α=1> (label 0) or |1> (label 1), then R(r1) S(s) R(r2)."""
        batch = len(self.labels)
        ket = torch.zeros(batch, cutoff, dtype=torch.complex128)
        ket[torch.arange(batch), self.labels] = 1
        s = FockState(ket).displace(1.0 - self.labels.double(), 0.0, 0)
        return s.rotate(self.rotation1, 0).squeeze(self.squeezing, 0.0, 0).rotate(self.rotation2, 0)


def gaussianity_batches(batches: int, batch: int, seed: int, squeeze: float = 0.5,
                        rotation: float = 2 * math.pi) -> list[GaussianityBatch]:
    """Random batches of task B: labels uniform, squeezing ~ U(−0.5, 0.5), rotations ~ U(−2π, 2π)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        labels = torch.from_numpy(rng.integers(0, 2, size=batch))
        sq, r1, r2 = (torch.from_numpy(rng.uniform(-w, w, size=batch)) for w in (squeeze, rotation, rotation))
        out.append(GaussianityBatch(labels, sq, r1, r2))
    return out


class GaussianityClassifier(nn.Module):
    """Network A (pretrained layers, frozen; or none) then network B (trainable layers); output p₀."""

    def __init__(self, pretrained: GaussianityLayers | None, layers: int = 3, cutoff: int = 15, init_sd: float = 0.001):
        super().__init__()
        self.pretrained, self.cutoff = pretrained, cutoff
        self.trainable = GaussianityLayers(init_sd * torch.randn(6, layers, dtype=torch.float64), trainable=True)

    def forward(self, batch: GaussianityBatch) -> tuple[Tensor, FockState]:
        s = batch.states(self.cutoff)
        if self.pretrained is not None:
            s = self.pretrained(s)
        s = self.trainable(s)
        return s.probabilities()[:, 0], s


def vacuum_loss(p0: Tensor, labels: Tensor) -> Tensor:
    """The notebook's cross entropy on p₀ (label 1 wants p₀ → 1)."""
    y = labels.double()
    return (-y * torch.log(p0 + EPS) - (1 - y) * torch.log(1 - p0 + EPS)).mean()


@dataclass
class QuantumRun:
    """One trained network B: test accuracy and loss, mean norm kept, seconds; the running (cumulative mean)
    training loss and accuracy after each step, as the notebook prints them."""

    test_acc: float
    test_loss: float
    train_loss: list[float] = field(repr=False)
    norm: float
    seconds: float
    train_acc: list[float] = field(repr=False, default_factory=list)


def train_gaussianity(model: GaussianityClassifier, train: list[GaussianityBatch], test: list[GaussianityBatch],
                      lr: float = 0.01) -> QuantumRun:
    """Adam on network B, one batch per step; then accuracy on the test batches (p₀ > 0.5 means label 1)."""
    started = time.perf_counter()
    optimizer = torch.optim.Adam(model.trainable.parameters(), lr=lr)
    running, running_acc, total, total_acc = [], [], 0.0, 0.0
    for step, batch in enumerate(train):
        p0, _ = model(batch)
        loss = vacuum_loss(p0, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()  # loss and accuracy of the weights before this step, as the notebook's session.run
        total_acc += ((p0.detach() > 0.5).long() == batch.labels).double().mean().item()
        running.append(total / (step + 1))
        running_acc.append(total_acc / (step + 1))
    correct = losses = norms = 0.0
    with torch.no_grad():
        for batch in test:
            p0, state = model(batch)
            losses += vacuum_loss(p0, batch.labels).item()
            correct += ((p0 > 0.5).long() == batch.labels).double().mean().item()
            norms += state.norm().mean().item()
    n = len(test)
    return QuantumRun(correct / n, losses / n, running, norms / n, time.perf_counter() - started, running_acc)


class QubitTransferClassifier(nn.Module):
    """Qubit QQ: the pretrained circuit's first k layers (frozen) then m trainable layers of the same template;
    class j's probability is the Born probability of basis state |j>, renormalised over the classes."""

    def __init__(self, network_a: QubitNetwork | None, template: str, n_qubits: int, input_scale: float,
                 layers: int, classes: int, init_sd: float = 0.1):
        super().__init__()
        fixed = network_a.weights if network_a is not None else torch.zeros(0, dtype=torch.float64)
        self.register_buffer("fixed", fixed.clone())
        depth = (network_a.depth if network_a is not None else 0) + layers
        circuit = make_circuit(template, n_qubits, depth)
        self.sim = CompiledCircuit(circuit, dtype=torch.float64)
        self.weights = nn.Parameter(init_sd * torch.randn(circuit.n_weights - len(fixed), dtype=torch.float64))
        self.input_scale, self.classes = input_scale, classes

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities of the classes (B, classes)."""
        state = self.sim.state(x.double() * self.input_scale, torch.cat([self.fixed, self.weights]))
        probs = probabilities(state)[:, : self.classes]
        return torch.log(probs + EPS) - torch.log(probs.sum(1, keepdim=True) + EPS)
