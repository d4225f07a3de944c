"""The feature cache filled for every split of a dataset, ahead of training: `qtransfer extract`."""
from __future__ import annotations

import time
from typing import Any

from .backbones import create_backbone
from .config import TrainConfig
from .train import _feature_splits, _splits, _weights_arg, feature_cache, resolve_device


def extract_dataset(config: TrainConfig, batch_size: int = 32) -> dict[str, Any]:
    """Compute the missing features of config.data's splits into the cache (shared among torchrun's ranks)."""
    config.validate()
    if config.no_cache:
        raise ValueError("extract fills the feature cache; drop --no-cache")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    device = resolve_device(config.device)
    backbone = create_backbone(config.backbone, weights=_weights_arg(config.weights))
    splits, _ = _splits(config, backbone)
    started = time.perf_counter()
    feats = _feature_splits(config, backbone, splits, device, mapped=True, batch_size=batch_size)
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
