"""Heads fitted in one call run through the one loop: train, compare, cv, checkpoints, TrainedModel."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.models.fitted import FittedHead
from qtransfer.models.heads import HEADS, check_ignored
from qtransfer.training.fit import fit_features
from qtransfer.training.run import _check_distributable, train
from qtransfer.training.trained import TrainedModel


class CentroidHead(FittedHead):
    """Nearest class mean with a temperature chosen on the training data: the simplest fitted head."""

    def __init__(self, in_features: int, n_classes: int, **shared):
        super().__init__(n_classes)
        check_ignored("centroid", shared)
        self.fitted_buffer("centroids", torch.zeros(n_classes, in_features))
        self.seen: list[torch.Tensor] = []

    def fit(self, features, labels, seed):
        self.seen.append(features.clone())
        self.fitted_buffer("centroids", torch.stack([features[labels == c].double().mean(0)
                                                     for c in range(self.n_classes)]))
        self.choices = {"temperature": 1.0, "seed": seed}
        return self.choices

    def forward(self, features):
        return -torch.cdist(features.double(), self.centroids).to(features.dtype)


@pytest.fixture
def centroid():
    HEADS["centroid"] = CentroidHead
    yield
    del HEADS["centroid"]


def _blobs(n: int, seed: int) -> FeatureSplit:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    return FeatureSplit(torch.randn(n, 8, generator=g) + 3 * torch.nn.functional.one_hot(labels, 8), labels, [])


def test_a_fitted_head_is_fitted_once_on_the_training_split_only(centroid) -> None:
    train_split, val, test = _blobs(60, 0), _blobs(30, 1), _blobs(30, 2)
    config = TrainConfig(head="centroid", epochs=30, seed=7)
    fit = fit_features(config, train_split, val, 3, torch.device("cpu"), test=test)
    (seen,) = fit.model.seen  # one fit, whatever config.epochs says
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, train_split.features.tolist()))
    assert [r["epoch"] for r in fit.rows] == [1] and fit.best["epoch"] == 1
    assert fit.choices == {"temperature": 1.0, "seed": 7}
    assert fit.test["accuracy"] > 0.9 and fit.rows[0]["val_acc"] > 0.9


def test_train_writes_a_fitted_run_that_loads_evaluates_and_refuses_torchrun_and_seed_parity(
    centroid, hymenoptera: Path, shared_cache: Path, tmp_path: Path
) -> None:
    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", head="centroid",
                         cache_dir=str(shared_cache), out=str(tmp_path), num_workers=0)
    run_dir, summary = train(config, progress=False)
    assert summary["epochs"] == 1 and summary["head_choices"] == {"temperature": 1.0, "seed": 42}
    assert summary["best_val_acc"] > 0.8  # class means of pretrained features separate ants from bees
    model = TrainedModel.load(run_dir, progress=False)
    assert model.evaluate()["accuracy"] == pytest.approx(summary["best_val_acc"])
    assert json.loads((run_dir / "config.json").read_text())["head"] == "centroid"
    with pytest.raises(InputError, match="seed-parity"):
        TrainConfig(data=str(hymenoptera), head="centroid", seed_parity=True).validate()
    with pytest.raises(InputError, match="without torchrun"):
        _check_distributable(config)
