"""The one pipeline from images to features: dataset + backbone -> cached, memory-mapped features per split.

Used by `train`, `compare`, `cv`, `sweep`, `extract`, `evaluate` and `reproduce`; every feature a frozen backbone
computes is stored once, keyed by the backbone, its weights, its transform and the image's bytes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qtransfer import distributed
from qtransfer.config import TrainConfig
from qtransfer.data.download import data_folder
from qtransfer.data.images import ImageFolderDataset, load_splits
from qtransfer.data.splits import carve_holdout
from qtransfer.errors import InputError
from qtransfer.features.augment import view_features
from qtransfer.features.cache import FeatureCache, MappedFeatures, concat, extractor_key, in_memory
from qtransfer.features.extraction import cached_features
from qtransfer.models.backbones import Backbone, create_backbone
from qtransfer.runtime import cache_root, resolve_device
from qtransfer.storage import content_hash

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSplit:
    """One split's features (in memory, or memory-mapped from the cache), labels and image files."""

    features: Tensor | MappedFeatures
    labels: Tensor
    paths: list[Path]
    computed: int = 0

    def to_device(self, device: torch.device) -> FeatureSplit:
        """The same split with its features on `device` (labels stay on the CPU; mapped rows move as read)."""
        return FeatureSplit(self.features.to(device), self.labels, self.paths, self.computed)

    def subset(self, indices: list[int]) -> FeatureSplit:
        """The rows at `indices`, in memory."""
        index = torch.tensor(indices, dtype=torch.long)
        return FeatureSplit(self.features[index], self.labels[index], [self.paths[i] for i in indices])

    def __add__(self, other: FeatureSplit) -> FeatureSplit:
        """Both splits' rows, this one's first."""
        return FeatureSplit(concat([self.features, other.features]), torch.cat([self.labels, other.labels]),
                            self.paths + other.paths, self.computed + other.computed)


@dataclass
class Features:
    """A dataset's features under one backbone: train, val (and test, held out), and augmented train views."""

    train: FeatureSplit
    val: FeatureSplit
    classes: list[str]
    backbone: str
    weights_id: str
    views: Tensor | None = None  # (N, 1 + views, F) when augmented views were asked for
    test: FeatureSplit | None = None  # held out: never used for training or selection

    @property
    def augmented_train(self) -> FeatureSplit:
        """The train split with features (N, 1 + views, F)."""
        if self.views is None:
            raise InputError("no augmented views were computed; pass augment_views > 0")
        return FeatureSplit(self.views, self.train.labels, self.train.paths)


def load_backbone(config: TrainConfig, progress: bool = True) -> Backbone:
    """The config's frozen backbone with its weights ('default', a file, or 'none')."""
    return create_backbone(config.backbone, weights=config.weights, progress=progress)


def dataset_splits(config: TrainConfig, backbone: Backbone, progress: bool = True
                   ) -> tuple[dict[str, ImageFolderDataset], dict[str, Any] | None]:
    """The data's splits under the backbone's transform, with a held-out test split carved from train when asked;
    and the record of the carved files (for holdout.json). Images whose features are cached were decoded
    before, byte for byte: only the others are checked for readability."""
    cache = feature_cache(config, backbone)
    root = shared_data_folder(config, progress)
    splits = load_splits(root, backbone.transform, trusted=_cached_image(cache) if cache else _never)
    if config.holdout or config.holdout_list:
        listed = Path(config.holdout_list) if config.holdout_list else None
        return carve_holdout(splits, config.holdout, config.seed, listed)
    return splits, None


def shared_data_folder(config: TrainConfig, progress: bool = True) -> Path:
    """config.data as a folder (a dataset name fetched into the cache on first use: by rank 0 before the others)."""
    if not distributed.is_distributed():
        return data_folder(config.data, config.cache_dir, progress)
    root, failed = None, True
    try:
        if distributed.is_main():
            root = data_folder(config.data, config.cache_dir, progress)
        failed = False
    finally:
        failed = distributed.broadcast(failed)  # every rank waits for rank 0, and stops with it
    if failed:
        raise InputError(f"rank 0 could not prepare --data {config.data} (its error says why)")
    return root if root is not None else data_folder(config.data, config.cache_dir, progress=False)


def _never(path: Path) -> bool:
    return False


def _cached_image(cache: FeatureCache) -> Callable[[Path], bool]:
    """Whether an image file's exact bytes have features in `cache`."""
    known = cache.lookup()

    def cached(path: Path) -> bool:
        try:
            return content_hash(path) in known
        except OSError:  # unreadable: let the check say why
            return False

    return cached


def feature_cache(config: TrainConfig, backbone: Backbone) -> FeatureCache | None:
    """The run's feature cache, or None with --no-cache and in seed-parity mode."""
    # seed-parity runs drift the backbone's BatchNorm statistics: their features are not the cached ones
    if config.no_cache or config.seed_parity:
        return None
    return FeatureCache(cache_root(config.cache_dir), extractor_key(config.backbone, backbone.weights_id,
                                                                    backbone.transform))


def split_features(
    config: TrainConfig, backbone: Backbone, splits: dict[str, ImageFolderDataset], device: torch.device,
    batch_size: int = 32, progress: bool = True,
) -> dict[str, FeatureSplit]:
    """Features of every split: computed where missing, memory-mapped from the cache (in memory without one)."""
    cache = feature_cache(config, backbone)
    out = {}
    for name in [n for n in SPLITS if n in splits]:
        ds = splits[name]
        paths = [p for p, _ in ds.samples]
        feats, computed = cached_features(
            backbone, ds, paths, cache, device, batch_size=batch_size, num_workers=config.workers(),
            desc=f"{name} features", mapped=cache is not None, progress=progress,
        )
        out[name] = FeatureSplit(feats, torch.tensor(ds.targets), paths, computed)
    return out


def load_features(config: TrainConfig, augment_views: int = 0, progress: bool = True) -> Features:
    """Backbone features of the data's splits (from the cache when there), plus augmented train views."""
    device = resolve_device(config.device)
    backbone = load_backbone(config, progress)
    splits, _ = dataset_splits(config, backbone, progress)
    feats = split_features(config, backbone, splits, device, progress=progress)
    views = None
    if augment_views > 0:
        clean = in_memory(feats["train"].features)
        root = None if config.no_cache else cache_root(config.cache_dir)
        views = view_features(backbone, splits["train"], augment_views, config.seed, root, device, clean,
                              num_workers=config.workers(), progress=progress)
    return Features(feats["train"], feats["val"], splits["train"].classes, config.backbone, backbone.weights_id,
                    views, feats.get("test"))


def extract_dataset(config: TrainConfig, batch_size: int = 32, progress: bool = True) -> dict[str, Any]:
    """Compute the missing features of config.data's splits into the cache (shared among torchrun's ranks)."""
    config.validate()
    if config.no_cache:
        raise InputError("extract fills the feature cache; drop --no-cache")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    device = resolve_device(config.device)
    backbone = load_backbone(config, progress)
    splits, _ = dataset_splits(config, backbone, progress)
    started = time.perf_counter()
    feats = split_features(config, backbone, splits, device, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - started
    cache = feature_cache(config, backbone)
    computed = sum(f.computed for f in feats.values())
    return {
        "images": sum(len(f.labels) for f in feats.values()),
        "computed": computed,
        "seconds": seconds,
        "images_per_s": computed / seconds if computed and seconds > 0 else None,
        "splits": {name: len(f.labels) for name, f in feats.items()},
        "cache": str(cache.dir) if cache else None,
        "backbone": config.backbone,
        "device": str(device),
    }
