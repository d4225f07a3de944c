"""What a `train` run learns from: the backbone that reads the images, the dataset's splits (a hold-out carved when
asked), and their features once extracted; served to the loop as batches."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from qtransfer.config import TrainConfig
from qtransfer.data.images import ImageFolderDataset
from qtransfer.features.pipeline import FeatureSplit, dataset_splits, load_backbone, split_features
from qtransfer.models.backbones import Backbone
from qtransfer.training.loop import Loop, StackedBatch, chunks

ImageLoader = DataLoader[tuple[Tensor, int]]


class RunData:
    """The backbone, the splits (train, val, and test when held out) with the record of the carved hold-out, and
    each split's features once `extract` has run (seed-parity mode extracts none: its backbone runs every step)."""

    def __init__(self, config: TrainConfig, backbone: Backbone, splits: dict[str, ImageFolderDataset],
                 holdout: dict[str, Any] | None):
        self.config, self.backbone, self.splits, self.holdout = config, backbone, splits, holdout
        self.features: dict[str, FeatureSplit] | None = None

    @classmethod
    def load(cls, config: TrainConfig, progress: bool = True) -> RunData:
        """The config's backbone and data splits, checked (unreadable images said why) before any run directory."""
        backbone = load_backbone(config, progress)
        splits, holdout = dataset_splits(config, backbone, progress)
        return cls(config, backbone, splits, holdout)

    @property
    def classes(self) -> list[str]:
        """The class names, in label order."""
        return self.splits["train"].classes

    def extract(self, device: torch.device, progress: bool = True) -> None:
        """Each split's features, read from the cache or computed once (none in seed-parity mode)."""
        if self.config.seed_parity:
            return
        # extraction's data loaders draw from torch's RNG; training must not depend on whether features were cached
        with torch.random.fork_rng(devices=[]):
            self.features = split_features(self.config, self.backbone, self.splits, device, progress=progress)

    def train_batches(self, loop: Loop) -> Iterator[StackedBatch]:
        """One epoch of the loop's shuffled training batches: of the extracted features, else of the images."""
        if self.features is not None:
            f = self.features["train"]
            return loop.batches(f.features, f.labels)
        loader = self._image_loader("train", loop.generator)
        return ((x.unsqueeze(0), y.unsqueeze(0), [len(y)]) for x, y in loader)

    def eval_batches(self, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        """A split's inputs and labels in order, in chunks."""
        if self.features is not None:
            f = self.features[split]
            return chunks(f.features, f.labels)
        return iter(self._image_loader(split))

    def _image_loader(self, split: str, generator: torch.Generator | None = None) -> ImageLoader:
        return DataLoader(self.splits[split], batch_size=self.config.batch_size, shuffle=generator is not None,
                          generator=generator, num_workers=self.config.workers())

    def summary(self) -> dict[str, Any]:
        """Images per split and class, the files skipped with their reasons, and the features computed (not cached)."""
        return {
            "counts": {name: ds.counts() for name, ds in self.splits.items()},
            "skipped": [{"path": str(p), "reason": r} for ds in self.splits.values() for p, r in ds.skipped],
            "features_computed": {k: f.computed for k, f in (self.features or {}).items()},
        }
