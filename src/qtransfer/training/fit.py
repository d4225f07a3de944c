"""A head fitted on features in memory: what `compare`, `cv` and `sweep` run many times over seeds."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qtransfer.config import TrainConfig
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.models.heads import build_head
from qtransfer.training.loop import Loop, chunks, evaluate
from qtransfer.training.metrics import classification_metrics


@dataclass
class FitResult:
    """Per-epoch metrics, the best epoch (selected on val), the head with its best weights, and that head's
    held-out metrics when a test split was given."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    parameters: int
    seconds: float
    model: nn.Module = field(repr=False)
    test: dict[str, Any] | None = None
    choices: dict[str, Any] = field(default_factory=dict)  # a fitted head's hyper-parameters chosen by inner CV


def fit_features(
    config: TrainConfig, train: FeatureSplit, val: FeatureSplit, n_classes: int, device: torch.device,
    test: FeatureSplit | None = None, classes: Sequence[str] | None = None,
) -> FitResult:
    """Train config's head on features with `qtransfer train`'s loop (same seed, same batches, same selection on
    val); then score the selected epoch's head on `test`, which plays no part in training or selection."""
    torch.manual_seed(config.seed)
    head = build_head(config, train.features.shape[-1], n_classes).to(device)
    loop = Loop(head, head.parameters(), config, device)
    best: dict[str, Any] = {}

    def keep_best(row: dict[str, Any]) -> None:
        if row["improved"]:
            best.update(copy.deepcopy(head.state_dict()))

    seconds = loop.run(lambda: loop.batches(train.features, train.labels), lambda: chunks(val.features, val.labels),
                       keep_best)
    parameters = sum(p.numel() for p in head.parameters() if p.requires_grad)
    head.load_state_dict(best)
    head.eval()
    held_out = None
    if test is not None:
        probs = evaluate(head, chunks(test.features, test.labels), device)["probs"]
        held_out = classification_metrics(test.labels, probs, list(classes or range(n_classes)))
    return FitResult(loop.rows, loop.best, parameters, seconds, head, held_out, dict(getattr(head, "choices", {})))
