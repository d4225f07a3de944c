"""Many same-shape heads as one module with a leading model axis: inputs (K, B, F) give logits (K, B, C).

Each of the K heads keeps its own weights (slice k of every stacked parameter); the forward is the head's own
`stacked_forward`, written with batched matrix products, so K heads cost a few ops, not K times as many. A head
without a model axis runs as `Solo`, the K = 1 case, so one training loop serves both.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """K linear layers at once: x (K, B, in), weight (K, out, in), bias (K, out) -> (K, B, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.mT)


def stackable(head: nn.Module) -> bool:
    """Whether K copies of `head` can train as one stacked module: it has a model-axis forward, no buffers, and
    (a quantum head) runs on the built-in engine's exact statevector path."""
    if not hasattr(head, "stacked_forward") or any(True for _ in head.buffers()):
        return False
    backend = getattr(head, "backend", None)
    return backend is None or (getattr(backend, "exact_pure", False) and not getattr(backend, "per_sample", True))


class StackableHead(Protocol):
    """A head with a model-axis forward: its parameters stacked (K, ...) by name, inputs (K, B, F) -> (K, B, C)."""

    def stacked_forward(self, p: Mapping[str, Tensor], x: Tensor) -> Tensor: ...


class StackedHeads(nn.Module):
    """K heads of one architecture, their parameters stacked along a leading model axis."""

    template: StackableHead

    def __init__(self, heads: Sequence[nn.Module]):
        super().__init__()
        if not heads or not all(stackable(h) and type(h) is type(heads[0]) for h in heads):
            raise ValueError("StackedHeads needs one or more stackable heads of one type")
        self.names = [name for name, _ in heads[0].named_parameters()]
        per_head = [dict(h.named_parameters()) for h in heads]
        self.stacked = nn.ParameterList(
            [nn.Parameter(torch.stack([p[name].detach() for p in per_head]).clone()) for name in self.names]
        )
        object.__setattr__(self, "template", heads[0])  # its circuit and backend; its own weights are not used

    @property
    def models(self) -> int:
        """K, the number of heads."""
        return self.stacked[0].shape[0]

    def parameters_by_name(self) -> Mapping[str, Tensor]:
        """Each stacked parameter (K, ...) under the name the single head gives it."""
        return dict(zip(self.names, self.stacked))

    def forward(self, x: Tensor) -> Tensor:
        return self.template.stacked_forward(self.parameters_by_name(), x)

    def state_dict_of(self, k: int) -> dict[str, Tensor]:
        """Head k's weights, as its own `state_dict()` would give them."""
        return {name: p[k].detach().clone() for name, p in zip(self.names, self.stacked)}


class Solo(nn.Module):
    """One module of any kind behind the model axis: (1, B, ...) -> (1, B, C)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def models(self) -> int:
        """Always 1."""
        return 1

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x[0]).unsqueeze(0)

    def train(self, mode: bool = True) -> Solo:
        self.training = mode
        self.model.train(mode)  # the model's own train() (the tutorial's frozen BatchNorm rule) decides
        return self
