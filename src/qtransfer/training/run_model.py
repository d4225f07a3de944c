"""What a `train` run trains: its head built from the settings, the module that runs forward (the head on features;
backbone + head in seed-parity mode), and their state in a checkpoint."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from qtransfer.config import TrainConfig
from qtransfer.formats import CHECKPOINT
from qtransfer.models.backbones import Backbone
from qtransfer.models.heads import build_head
from qtransfer.training.checkpoints import check_compatible, load_buffers


class TutorialModel(nn.Sequential):
    """Backbone then head, trained as the tutorial trains them: its model.train() changes only the BatchNorm
    layers of a frozen ResNet (their statistics drift), so here only those and the head leave eval mode."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__(backbone, head)

    def train(self, mode: bool = True) -> TutorialModel:
        self.training = mode
        backbone, head = self
        head.train(mode)
        backbone.eval()
        if mode:
            for m in backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
        return self


class RunModel:
    """A run's head on its backbone: `module` is what runs forward, the head's parameters are what is trained."""

    def __init__(self, config: TrainConfig, backbone: Backbone, head: nn.Module, device: torch.device):
        self.config, self.backbone, self.head = config, backbone, head
        self.module: nn.Module = TutorialModel(backbone, head) if config.seed_parity else head
        self.module.to(device)

    @classmethod
    def build(cls, config: TrainConfig, backbone: Backbone, n_classes: int, device: torch.device) -> RunModel:
        """The config's head for the backbone's features, its initial weights drawn after seeding torch."""
        torch.manual_seed(config.seed)
        return cls(config, backbone, build_head(config, backbone.out_features, n_classes), device)

    def state(self, classes: Sequence[str], epoch: int) -> dict[str, Any]:
        """The checkpoint of the weights now, as the selected epoch's (best.pt holds it; last.pt adds the loop's)."""
        state = CHECKPOINT.stamp({"head": self.head.state_dict(), "classes": classes, "epoch": epoch,
                                  "config": json.loads(self.config.to_json())})
        if self.config.seed_parity:  # BatchNorm statistics drift in this mode; keep them
            state["backbone_buffers"] = dict(self.backbone.named_buffers())
        return state

    def load(self, state: dict[str, Any], classes: Sequence[str]) -> None:
        """The weights of a checkpoint written by these settings (refused, saying what differs, when not)."""
        check_compatible(state, classes, self.head)
        self.head.load_state_dict(state["head"])
        if "backbone_buffers" in state:
            load_buffers(self.backbone, state["backbone_buffers"])

    def trainable_parameters(self) -> int:
        """How many numbers training changes."""
        return sum(p.numel() for p in self.head.parameters() if p.requires_grad)
