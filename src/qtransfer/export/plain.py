"""A trained model as plain torch for inference: the backbone, and the head with its circuit as ordinary tensor
ops (quantum/frozen.py), ending in class probabilities. Heads whose forward is already plain torch (classical,
linear, and the scikit-learn-fitted logreg, svm, mlp) are used as they are."""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.models.fitted import FittedHead
from qtransfer.models.heads import DressedQuantumHead
from qtransfer.models.kernel_heads import FidelityKernelHead, ProjectedKernelHead, QuantumKernelHead
from qtransfer.quantum.circuits import Circuit, Observable
from qtransfer.quantum.frozen import FrozenCircuit


class FrozenDressedHead(nn.Module):
    """The dressed quantum head with its trained circuit as tensor ops: Linear -> tanh * pi/2 -> circuit -> Linear."""

    def __init__(self, head: DressedQuantumHead):
        super().__init__()
        self.pre_net = copy.deepcopy(head.pre_net)
        self.circuit = FrozenCircuit(head.circuit, head.q_params, dtype=head.q_params.dtype)
        self.post_net = copy.deepcopy(head.post_net)

    def angles(self, features: Tensor) -> Tensor:
        """The circuit's input angles: tanh(pre_net(x)) * pi / 2."""
        return torch.tanh(self.pre_net(features)) * (math.pi / 2)

    def forward(self, features: Tensor) -> Tensor:
        return self.post_net(self.circuit(self.angles(features)))


class FrozenKernelHead(nn.Module):
    """A noiseless quantum-kernel head with its embedding as tensor ops and its support vectors' states (fidelity)
    or Bloch vectors (projected) as constants."""

    bandwidth: Tensor
    dual_coef: Tensor
    intercept: Tensor
    gamma: Tensor
    support_bloch: Tensor  # projected
    support_real: Tensor  # fidelity
    support_imag: Tensor

    def __init__(self, head: QuantumKernelHead):
        super().__init__()
        self.reduction = copy.deepcopy(head.reduction)
        self.embedding = head.embedding
        self.projected = isinstance(head, ProjectedKernelHead)
        circuit = head.embedding.circuit
        if self.projected:
            n = circuit.n_qubits
            observables = tuple(Observable(p, (k,)) for k in range(n) for p in "XYZ")
            circuit = Circuit(n, circuit.n_inputs, circuit.weight_shape, circuit.gates, observables, name=circuit.name)
        self.circuit = FrozenCircuit(circuit, torch.zeros(circuit.n_weights), dtype=torch.float64)
        for name in ("bandwidth", "dual_coef", "intercept"):
            self.register_buffer(name, getattr(head, name).detach().clone())
        gamma = head.gamma if isinstance(head, ProjectedKernelHead) else torch.ones(())
        self.register_buffer("gamma", gamma.detach().clone())
        with torch.no_grad():
            support = self.embedding.inputs(head.support_angles.double())
            if self.projected:
                self.register_buffer("support_bloch", self.circuit(support))
            else:
                real, imag = self.circuit.state(support)
                self.register_buffer("support_real", real)
                self.register_buffer("support_imag", imag if imag is not None else torch.zeros_like(real))

    def _inputs(self, angles: Tensor) -> Tensor:
        pairs = self.embedding.pairs
        if not pairs:
            return angles
        return torch.cat([angles] + [angles[:, i:i + 1] * angles[:, j:j + 1] for i, j in pairs], 1)

    def forward(self, features: Tensor) -> Tensor:
        inputs = self._inputs(self.bandwidth * self.reduction(features))
        if self.projected:
            diff = self.circuit(inputs)[:, None, :] - self.support_bloch[None, :, :]
            gram = torch.exp(-self.gamma * (diff * diff).sum(-1) / 2)
        else:
            real, imag = self.circuit.state(inputs)
            imag = imag if imag is not None else real * 0
            overlap_real = real @ self.support_real.T + imag @ self.support_imag.T
            overlap_imag = imag @ self.support_real.T - real @ self.support_imag.T
            gram = overlap_real * overlap_real + overlap_imag * overlap_imag
        return (gram @ self.dual_coef + self.intercept).to(features.dtype)


class FittedForward(nn.Module):
    """A fitted head's forward on its buffers, without the head as a submodule: its extra state (the chosen
    hyper-parameters, a dict) is not a tensor, and tracing takes every module's state as tensors."""

    def __init__(self, head: FittedHead):
        super().__init__()
        self._fitted = (head,)  # a tuple: not registered as a submodule
        for name, buffer in head.named_buffers():
            self.register_buffer(name.replace(".", "_"), buffer)  # the same tensors, so the trace keeps them as ours

    def forward(self, features: Tensor) -> Tensor:
        return self._fitted[0](features)


class PlainModel(nn.Module):
    """images (N, 3, H, W), preprocessed as the sidecar says -> class probabilities (N, classes), float32."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images)).float().softmax(1)


def exactness(config: TrainConfig) -> str | None:
    """What the exported model computes instead of the run's own simulation, when it differs (shots); None when it
    computes the same. Refuses noise, which it does not simulate."""
    options = config.parsed_device_options()
    if config.noise or "noise_model" in options:
        what = f"--noise {config.noise!r}" if config.noise else f"the device noise model {options['noise_model']!r}"
        raise InputError(f"this run was trained with {what}; an export computes noiseless expectation values, which "
                         "would not be the model this run scored. Export a run trained without noise")
    shots = config.shots or options.get("shots")
    if shots and config.head in ("quantum", "qkernel", "projected_qkernel"):
        return (f"the run estimates what its circuit measures (expectation values or kernel entries) from {shots} "
                "shots; this file computes the exact values those shots estimate (the model `qtransfer evaluate` "
                "scores without --shots), so its probabilities are the exact model's, not one draw of shots")
    return None


def plain_head(head: nn.Module) -> nn.Module:
    """The head as plain torch ops for tracing (a copy where it has to be rebuilt, else the head itself)."""
    if isinstance(head, DressedQuantumHead):
        return FrozenDressedHead(head)
    if isinstance(head, (FidelityKernelHead, ProjectedKernelHead)):
        return FrozenKernelHead(head)
    if isinstance(head, FittedHead):
        return FittedForward(head)
    return head


def plain_model(backbone: nn.Module, head: nn.Module) -> PlainModel:
    """The whole model as plain torch, in eval mode, on the CPU."""
    return PlainModel(copy.deepcopy(backbone).cpu(), plain_head(copy.deepcopy(head).cpu())).eval()
