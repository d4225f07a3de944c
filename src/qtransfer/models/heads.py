"""Network B by name: the dressed quantum head, classical heads, fitted baselines, quantum kernels and the fourier
control."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from qtransfer.models.baselines import LogisticRegressionHead, MLPHead, SVMHead
from qtransfer.models.fourier import FourierHead
from qtransfer.models.kernel_heads import FidelityKernelHead, ProjectedKernelHead
from qtransfer.models.settings import SHARED_SETTINGS as SHARED_SETTINGS
from qtransfer.models.settings import check_ignored
from qtransfer.models.stacked import linear
from qtransfer.quantum.backends import (
    Backend,
    PennyLaneBackend,
    TorchBackend,
    get_backend,
)
from qtransfer.quantum.circuits import make_circuit
from qtransfer.registry import Registry

HEADS: Registry[Callable[..., nn.Module]] = Registry("head")


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a head class or factory `fn(in_features, n_classes, **kwargs)`."""
    return HEADS.register(name)


def create_head(name: str, in_features: int, n_classes: int, **kwargs: Any) -> nn.Module:
    """Build the head registered as `name`."""
    return HEADS.lookup(name)(in_features, n_classes, **kwargs)


class HeadSettings(Protocol):
    """What build_head reads of a run's settings (a TrainConfig)."""

    head: str
    backend: str
    seed_parity: bool

    def head_options(self) -> dict[str, Any]: ...


def build_head(config: HeadSettings, in_features: int, n_classes: int, per_sample: bool | None = None) -> nn.Module:
    """The one place a head is made from settings: config's head with its circuit and backend (shots, noise,
    device options). `per_sample` (default: seed-parity mode) runs the circuit one sample at a time, as the
    tutorial does."""
    options = config.head_options()
    if (config.seed_parity if per_sample is None else per_sample) and config.head == "quantum":
        name = config.backend
        options["backend"] = (PennyLaneBackend(name.split(":", 1)[1], per_sample=True)
                              if name.startswith("pennylane:") else TorchBackend(per_sample=True))
    return create_head(config.head, in_features, n_classes, **options)


register_head("logreg")(LogisticRegressionHead)
register_head("svm")(SVMHead)
register_head("mlp")(MLPHead)
register_head("qkernel")(FidelityKernelHead)
register_head("projected_qkernel")(ProjectedKernelHead)
register_head("fourier")(FourierHead)


@register_head("quantum")
class DressedQuantumHead(nn.Module):
    """Linear -> tanh * pi/2 -> variational circuit -> Linear (the reference's DressedQuantumNet)."""

    # what `--tune` searches (TrainConfig fields): learning rate x weight decay x depth
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"lr": (4e-4, 4e-3), "weight_decay": (0.0, 1e-1),
                                                    "depth": (3, 6)}

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        n_qubits: int = 4,
        depth: int = 6,
        q_delta: float = 0.01,
        template: str = "tutorial",
        backend: str | Backend = "torch",
        entangle: bool = True,
        **shared: Any,
    ):
        super().__init__()
        check_ignored("quantum", shared)
        self.circuit = make_circuit(template, n_qubits, depth, entangle)
        self.backend = get_backend(backend)
        # Creation order matches the reference, so a seed gives the reference's initial weights.
        self.pre_net = nn.Linear(in_features, self.circuit.n_inputs)
        self.q_params = nn.Parameter(q_delta * torch.randn(self.circuit.n_weights))
        self.post_net = nn.Linear(self.circuit.n_outputs, n_classes)

    def circuit_inputs(self, features: Tensor) -> Tensor:
        """The angles fed to the circuit: tanh(pre_net(x)) * pi / 2."""
        return torch.tanh(self.pre_net(features)) * (math.pi / 2)

    def forward(self, features: Tensor) -> Tensor:
        q_out = self.backend(self.circuit, self.circuit_inputs(features), self.q_params)
        return self.post_net(q_out)

    def stacked_forward(self, p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """K heads' logits (K, B, C) for features (K, B, F), each with its own weights: one engine call."""
        angles = torch.tanh(linear(x, p["pre_net.weight"], p["pre_net.bias"])) * (math.pi / 2)
        return linear(self.backend(self.circuit, angles, p["q_params"]), p["post_net.weight"], p["post_net.bias"])

    def extra_repr(self) -> str:
        c = self.circuit
        return f"template={c.name}, n_qubits={c.n_qubits}, weight_shape={c.weight_shape}, backend={self.backend.name}"


@register_head("classical")
class DressedClassicalHead(nn.Module):
    """The dressed head with the circuit replaced by a classical layer of the same width: Linear + tanh."""

    # learning rate x weight decay x width (as the quantum head's depth)
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"lr": (4e-4, 4e-3), "weight_decay": (0.0, 1e-1),
                                                    "n_qubits": (4, 8)}

    def __init__(self, in_features: int, n_classes: int, n_qubits: int = 4, **shared: Any):
        super().__init__()
        check_ignored("classical", shared)
        self.pre_net = nn.Linear(in_features, n_qubits)
        self.hidden = nn.Linear(n_qubits, n_qubits)
        self.post_net = nn.Linear(n_qubits, n_classes)

    def forward(self, features: Tensor) -> Tensor:
        h = torch.tanh(self.pre_net(features)) * (math.pi / 2)
        return self.post_net(torch.tanh(self.hidden(h)))

    def stacked_forward(self, p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """K heads' logits (K, B, C) for features (K, B, F), each with its own weights."""
        h = torch.tanh(linear(x, p["pre_net.weight"], p["pre_net.bias"])) * (math.pi / 2)
        h = torch.tanh(linear(h, p["hidden.weight"], p["hidden.bias"]))
        return linear(h, p["post_net.weight"], p["post_net.bias"])


@register_head("linear")
class LinearHead(nn.Module):
    """A single Linear layer: the usual classical transfer-learning head."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"lr": (1e-4, 4e-4, 1.6e-3, 6.4e-3), "weight_decay": (0.0, 1e-1)}

    def __init__(self, in_features: int, n_classes: int, **shared: Any):
        super().__init__()
        check_ignored("linear", shared)
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def stacked_forward(self, p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """K heads' logits (K, B, C) for features (K, B, F), each with its own weights."""
        return linear(x, p["fc.weight"], p["fc.bias"])
