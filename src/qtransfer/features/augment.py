"""Augmented views of training images: seeded random crops and flips, their features computed once and cached."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from qtransfer.data.images import ImageFolderDataset, load_image
from qtransfer.features.cache import FeatureCache, extractor_key, in_memory
from qtransfer.features.extraction import cached_features, content_keys
from qtransfer.models.backbones import Backbone


def augment_transform(backbone: Backbone) -> Any:
    """Random resized crop and horizontal flip at the backbone's input size, then its normalisation."""
    return backbone.spec.transform(augment=True)


def view_seed(seed: int, view: int, image_hash: str) -> int:
    """The torch seed of one view of one image: the same in every process and on every run."""
    digest = hashlib.sha256(f"{seed}:{view}:{image_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class AugmentedView(Dataset[tuple[Tensor, int]]):
    """View `view` of every image of a dataset, each drawn with its own seed."""

    def __init__(self, dataset: ImageFolderDataset, hashes: list[str], transform: Any, view: int, seed: int):
        self.dataset, self.hashes, self.transform, self.view, self.seed = dataset, hashes, transform, view, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.dataset.samples[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(self.seed, self.view, self.hashes[index]))
            return self.transform(load_image(path)), label


def view_features(
    backbone: Backbone,
    dataset: ImageFolderDataset,
    views: int,
    seed: int,
    cache_root: Path | None,
    device: torch.device,
    clean: Tensor,
    num_workers: int = 0,
    progress: bool = True,
) -> Tensor:
    """Features (N, 1 + views, F): the un-augmented features `clean` first, then `views` augmented views."""
    hashes = content_keys([p for p, _ in dataset.samples])
    transform = augment_transform(backbone)
    out = [clean]
    for view in range(views):
        cache = None
        if cache_root is not None:
            key = extractor_key(backbone.name, backbone.weights_id, f"{transform!r} seed={seed} view={view}")
            cache = FeatureCache(cache_root, key)
        feats, _ = cached_features(
            backbone, AugmentedView(dataset, hashes, transform, view, seed), hashes, cache, device,
            batch_size=32, num_workers=num_workers, desc=f"augmented view {view + 1}/{views}", progress=progress,
        )
        out.append(in_memory(feats))
    return torch.stack(out, dim=1)
