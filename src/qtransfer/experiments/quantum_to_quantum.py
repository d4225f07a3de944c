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
from qtransfer.quantum.fock_gates import CubicPhase
from qtransfer.quantum.statevector import CompiledCircuit, probabilities

EPS = 1e-7  # as the notebook, inside the logarithms of p₀ and 1 − p₀


@dataclass
class GaussianityBatch:
    """Labels (1 = non-Gaussian) and the random Gaussian layer's parameters of one batch."""

    labels: Tensor
    squeezing: Tensor
    rotation1: Tensor
    rotation2: Tensor

    def states(self, cutoff: int, models: int = 1) -> FockState:
        """Input states: |α=1> (label 0) or |1> (label 1), then R(r1) S(s) R(r2); `models` stacked groups."""
        batch = len(self.labels)
        ket = torch.zeros(batch, cutoff, dtype=torch.complex128)
        ket[torch.arange(batch), self.labels] = 1
        s = FockState(ket, models).displace(1.0 - self.labels.double(), 0.0, 0)
        return s.rotate(self.rotation1, 0).squeeze(self.squeezing, 0.0, 0).rotate(self.rotation2, 0)


def stack_batches(per_model: list[list[GaussianityBatch]]) -> list[GaussianityBatch]:
    """K models' batch lists as one list of batches K times as large, model-major (for a stacked network)."""
    return [GaussianityBatch(*(torch.cat([getattr(b, f) for b in step]) for f in
                               ("labels", "squeezing", "rotation1", "rotation2")))
            for step in zip(*per_model, strict=True)]


def merge_steps(steps: list[GaussianityBatch], models: int) -> GaussianityBatch:
    """Several stacked batches of K groups as one batch of K groups, each group holding its model's elements."""

    def merge(field_name: str) -> Tensor:
        values = torch.stack([getattr(b, field_name) for b in steps])  # (steps, K·B)
        return values.reshape(len(steps), models, -1).transpose(0, 1).reshape(-1)

    return GaussianityBatch(*(merge(f) for f in ("labels", "squeezing", "rotation1", "rotation2")))


def input_states(steps: list[GaussianityBatch], cutoff: int, models: int, chunk: int = 10) -> list[FockState]:
    """The input states of every stacked batch, prepared `chunk` batches at a time (they hold no weights)."""
    out = []
    for start in range(0, len(steps), chunk):
        part = steps[start:start + chunk]
        ket = merge_steps(part, models).states(cutoff, models).ket  # (K, n, B) order
        ket = ket.reshape(models, len(part), -1, cutoff).transpose(0, 1)
        out += [FockState(k.reshape(-1, cutoff), models) for k in ket]
    return out


def notebook_stream(seed: int, train: int = 500, test: int = 500, batch: int = 8, squeeze: float = 0.5,
                    rotation: float = 2 * math.pi) -> tuple[list[GaussianityBatch], list[GaussianityBatch]]:
    """The q2q notebook's data, drawn as it draws them: one numpy.random.RandomState(seed) for the training
    batches and then the test batches; per batch the labels, then s, φ₁, φ₂ and a φ₃ that is drawn and unused;
    the values pass through float32, as the notebook's placeholders hold them."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(train + test):
        labels = torch.from_numpy(rng.randint(2, size=batch).astype(np.int64))
        sq, r1, r2, _ = (torch.from_numpy(rng.uniform(-w, w, size=(batch, 1))[:, 0].astype(np.float32)).double()
                         for w in (squeeze, rotation, rotation, rotation))
        out.append(GaussianityBatch(labels, sq, r1, r2))
    return out[:train], out[train:]


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


def initial_weights(seeds: list[int], layers: int = 3, init_sd: float = 0.001) -> Tensor:
    """Network B's starting weights, one (6, layers) set per seed as torch.manual_seed(seed) then randn draws."""
    return torch.stack([init_sd * torch.randn(6, layers, dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(seed)) for seed in seeds])


class GaussianityClassifier(nn.Module):
    """Network A (pretrained layers, frozen; or none) then network B (trainable layers); output p₀.

    `weights` (K, 6, layers) stacks K networks B (each its own seed's start) that train as one: batches then
    hold K groups, model-major (`stack_batches`). Without it, one network B starts from N(0, init_sd²) draws.
    """

    def __init__(self, pretrained: GaussianityLayers | None, layers: int = 3, cutoff: int = 15, init_sd: float = 0.001,
                 weights: Tensor | None = None, cubic_phase: CubicPhase = "exact"):
        super().__init__()
        self.pretrained, self.cutoff = pretrained, cutoff
        if weights is None:
            weights = init_sd * torch.randn(6, layers, dtype=torch.float64)
        self.models = weights.shape[0] if weights.dim() == 3 else 1
        self.trainable = GaussianityLayers(weights, trainable=True, cubic_phase=cubic_phase)

    def forward(self, batch: GaussianityBatch | FockState) -> tuple[Tensor, FockState]:
        """p₀ and the output state, from a batch or from its input states (`input_states`)."""
        s = batch if isinstance(batch, FockState) else batch.states(self.cutoff, self.models)
        if self.pretrained is not None:
            s = self.pretrained(s)
        s = self.trainable(s)
        return s.probabilities()[:, 0], s


def vacuum_loss(p0: Tensor, labels: Tensor, models: int = 1) -> Tensor:
    """The notebook's cross entropy on p₀ (label 1 wants p₀ → 1); one mean per stacked model, (models,)."""
    y = labels.double()
    loss = (-y * torch.log(p0 + EPS) - (1 - y) * torch.log(1 - p0 + EPS)).reshape(models, -1).mean(1)
    return loss[0] if models == 1 else loss


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
    return train_gaussianity_stacked(model, train, test, lr)[0]


def train_gaussianity_stacked(model: GaussianityClassifier, train: list[GaussianityBatch],
                              test: list[GaussianityBatch], lr: float = 0.01, test_chunk: int = 25
                              ) -> list[QuantumRun]:
    """`train_gaussianity` for K stacked networks B: one run each, as K solo runs would give (seconds: the
    stacked run's time shared out)."""
    started, k = time.perf_counter(), model.models
    optimizer = torch.optim.Adam(model.trainable.parameters(), lr=lr)
    loss_sum, acc_sum = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    running, running_acc = [], []
    states = input_states(train, model.cutoff, k)
    for step, batch in enumerate(train):
        p0, _ = model(states[step])
        losses = vacuum_loss(p0, batch.labels, k).reshape(k)
        optimizer.zero_grad()
        losses.sum().backward()  # each model's weights get only its own loss's gradient
        optimizer.step()
        loss_sum += losses.detach()  # loss and accuracy of the weights before this step, as the notebook's session.run
        acc_sum += ((p0.detach() > 0.5).long() == batch.labels).double().reshape(k, -1).mean(1)
        running.append((loss_sum / (step + 1)).tolist())
        running_acc.append((acc_sum / (step + 1)).tolist())
    correct, losses_t, norms = (torch.zeros(k, dtype=torch.float64) for _ in range(3))
    with torch.no_grad():
        for start in range(0, len(test), test_chunk):  # equal batches: the mean of batch means is the chunk's mean
            part = test[start:start + test_chunk]
            batch, w = merge_steps(part, k), len(part)
            p0, state = model(batch)
            losses_t += w * vacuum_loss(p0, batch.labels, k).reshape(k)
            correct += w * ((p0 > 0.5).long() == batch.labels).double().reshape(k, -1).mean(1)
            norms += w * state.norm().reshape(k, -1).mean(1)
    n, seconds = len(test), (time.perf_counter() - started) / k
    return [QuantumRun((correct[i] / n).item(), (losses_t[i] / n).item(), [r[i] for r in running],
                       (norms[i] / n).item(), seconds, [r[i] for r in running_acc]) for i in range(k)]


class QubitTransferClassifier(nn.Module):
    """Qubit QQ: the pretrained circuit's first k layers (frozen) then m trainable layers of the same template;
    class j's probability is the Born probability of basis state |j>, renormalised over the classes."""

    fixed: Tensor  # network A's weights (a buffer)

    def __init__(self, network_a: QubitNetwork | None, template: str, n_qubits: int, input_scale: float,
                 layers: int, classes: int, init_sd: float = 0.1):
        super().__init__()
        fixed = network_a.get_buffer("weights") if network_a is not None else torch.zeros(0, dtype=torch.float64)
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


def train_seeds(network_a: GaussianityLayers | None, data: list[tuple[list[GaussianityBatch], list[GaussianityBatch]]],
                seeds: list[int], cutoff: int = 15, cubic_phase: CubicPhase = "exact", lr: float = 0.01,
                layers: int = 3) -> list[QuantumRun]:
    """One network B per seed (its start `initial_weights`, its own (train, test) batches), trained stacked."""
    model = GaussianityClassifier(network_a, layers, cutoff, weights=initial_weights(seeds, layers),
                                  cubic_phase=cubic_phase)
    train, test = (stack_batches([d[i] for d in data]) for i in (0, 1))
    return train_gaussianity_stacked(model, train, test, lr)
