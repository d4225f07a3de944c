"""Backbone features of a dataset, computed in batches into the cache (shared among torchrun's ranks) or read
from it."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from qtransfer import distributed
from qtransfer.errors import InputError
from qtransfer.features.cache import FeatureCache, MappedFeatures
from qtransfer.storage import content_hash

ImageDataset = Dataset[tuple[Tensor, int]]  # (transformed image, label) pairs

# Batches per shard file: bounds the memory an extraction holds before it writes (256 × 32 images).
SHARD_BATCHES = 256


def compute_features(
    backbone: nn.Module,
    dataset: ImageDataset,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
    progress: bool = True,
) -> Tensor:
    """Run the frozen backbone over a dataset of (image, label) in batches: features (N, F)."""
    chunks = list(_feature_batches(backbone, dataset, device, batch_size, num_workers, desc, progress))
    return torch.cat(chunks) if chunks else torch.zeros(0)


def _feature_batches(
    backbone: nn.Module, dataset: ImageDataset, device: torch.device, batch_size: int, num_workers: int, desc: str,
    progress: bool,
) -> Iterator[Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    backbone = backbone.to(device).eval()
    with torch.inference_mode():
        bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not (progress and distributed.is_main()))
        for images, _ in bar:
            images = images.to(device)
            if images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            yield backbone(images).float().cpu()


def cached_features(
    backbone: nn.Module,
    dataset: ImageDataset,
    keys: Sequence[Path | str],
    cache: FeatureCache | None,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
    mapped: bool = False,
    progress: bool = True,
) -> tuple[Tensor | MappedFeatures, int]:
    """Features (N, F) of a dataset and how many were computed; item i is keyed by keys[i]: an image file
    (keyed by its content hash) or a ready content key. With `mapped`, the features stay in the cache's
    memory-mapped shards. Under torchrun the ranks share the missing images' extraction."""
    if cache is None:
        return compute_features(backbone, dataset, device, batch_size, num_workers, desc, progress), len(keys)
    hashes = content_keys(keys)
    known = cache.lookup()
    # every rank must split the same list, even if another run adds shards meanwhile: rank 0's view decides
    missing = distributed.broadcast(sorted({h: i for i, h in enumerate(hashes) if h not in known}.values()))
    if missing:
        extract(backbone, dataset, missing, hashes, cache, device, batch_size, num_workers, desc, progress)
        distributed.barrier()
        absent = sum(h not in cache.lookup() for h in dict.fromkeys(hashes))
        if absent:
            raise InputError(
                f"{absent} image(s) another process extracted are not in {cache.dir}: the cache folder is not "
                f"shared between the machines. Pass --cache-dir on a filesystem every machine mounts, or run "
                f"`qtransfer extract` on each machine first"
            )
    features = cache.mapped(hashes)
    return (features if mapped else features.tensor()), len(missing)


def content_keys(keys: Sequence[Path | str]) -> list[str]:
    """Each key as a content key: an image file's sha256, or the key itself; under torchrun each rank reads
    every world-th file and the ranks exchange the hashes, so no file is read by every rank."""
    share = distributed.share(range(len(keys)))
    mine = {i: _content_key(keys[i]) for i in share}
    merged: dict[int, str] = {}
    for part in distributed.gather(mine):
        merged.update(part)
    return [merged[i] for i in range(len(keys))]


def _content_key(key: Path | str) -> str:
    return content_hash(key) if isinstance(key, Path) else key


def extract(
    backbone: nn.Module, dataset: ImageDataset, indices: Sequence[int], hashes: Sequence[str], cache: FeatureCache,
    device: torch.device, batch_size: int = 32, num_workers: int = 0, desc: str = "features", progress: bool = True,
) -> None:
    """Compute this rank's share of dataset[indices] into new cache shards.

    The share is whole batches (batch b goes to rank b mod world), so every image is computed in exactly the
    batch it has in a single-process run: CPU convolution kernels can round differently for another batch
    composition, and this keeps the cache bit for bit the same however many ranks fill it.
    """
    batches = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    mine = [i for batch in distributed.share(batches) for i in batch]
    pending: list[Tensor] = []
    done = 0
    for features in _feature_batches(backbone, Subset(dataset, mine), device, batch_size, num_workers, desc, progress):
        pending.append(features)
        if len(pending) == SHARD_BATCHES:
            block = torch.cat(pending)
            cache.add([hashes[i] for i in mine[done : done + len(block)]], block)
            done, pending = done + len(block), []
    if pending:
        block = torch.cat(pending)
        cache.add([hashes[i] for i in mine[done : done + len(block)]], block)
