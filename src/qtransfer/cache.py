"""Features computed once and reused: stored by extractor and by each image file's content hash."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .storage import atomic_torch_save, file_sha256


def default_cache_dir() -> Path:
    """$QTRANSFER_CACHE, else $XDG_CACHE_HOME/qtransfer, else ~/.cache/qtransfer."""
    if os.environ.get("QTRANSFER_CACHE"):
        return Path(os.environ["QTRANSFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qtransfer"


def extractor_key(backbone: str, weights_id: str, transform: object) -> str:
    """Key of everything but the image that decides a feature: backbone, weights, transform settings."""
    text = json.dumps({"backbone": backbone, "weights": weights_id, "transform": repr(transform)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureCache:
    """Feature vectors of one extractor, stored in shards keyed by the images' content hashes.

    Each extraction writes a new shard under a unique name, atomically, so runs sharing the
    cache never see a torn entry; a shard that fails to load or to verify is deleted and its
    images are recomputed.
    """

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / "features" / key
        self._rows: dict[str, Tensor] | None = None

    def lookup(self) -> dict[str, Tensor]:
        """All cached features of this extractor: image hash -> feature vector."""
        if self._rows is None:
            self._rows = {}
            for shard in sorted(self.dir.glob("*.pt")):
                self._rows.update(self._read(shard))
        return self._rows

    def _read(self, shard: Path) -> dict[str, Tensor]:
        try:
            entry = torch.load(shard, map_location="cpu", weights_only=True)
            hashes, features = entry["hashes"], entry["features"]
            if entry["checksum"] != _checksum(features) or len(hashes) != len(features):
                raise ValueError("checksum mismatch")
        except Exception as err:  # a torn or foreign file: drop it, its images get recomputed
            warnings.warn(f"feature cache entry {shard} is corrupt ({err}); recomputing it", stacklevel=3)
            shard.unlink(missing_ok=True)
            return {}
        return dict(zip(hashes, features))

    def add(self, hashes: Sequence[str], features: Tensor) -> None:
        """Store features of the images with these hashes as one new shard."""
        features = features.detach().cpu().contiguous()
        entry = {"hashes": list(hashes), "features": features, "checksum": _checksum(features)}
        atomic_torch_save(entry, self.dir / f"{uuid.uuid4().hex}.pt")
        self.lookup().update(zip(hashes, features))


def _checksum(features: Tensor) -> str:
    return hashlib.sha256(features.numpy().tobytes()).hexdigest()


def compute_features(
    backbone: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
) -> Tensor:
    """Run the frozen backbone over a dataset of (image, label) in batches: features (N, F)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    backbone = backbone.to(device).eval()
    chunks = []
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc=desc, unit="batch", leave=False):
            images = images.to(device)
            if images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            chunks.append(backbone(images).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)


def cached_features(
    backbone: nn.Module,
    dataset: Dataset,
    keys: Sequence[Path | str],
    cache: FeatureCache | None,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
) -> tuple[Tensor, int]:
    """Features (N, F) of a dataset and how many were computed; item i is keyed by keys[i]: an image file
    (keyed by its content hash) or a ready content key."""
    if cache is None:
        return compute_features(backbone, dataset, device, batch_size, num_workers, desc), len(keys)
    hashes = [file_sha256(k) if isinstance(k, Path) else k for k in keys]
    known = cache.lookup()
    missing = sorted({h: i for i, h in enumerate(hashes) if h not in known}.values())
    if missing:
        new = compute_features(backbone, Subset(dataset, missing), device, batch_size, num_workers, desc)
        cache.add([hashes[i] for i in missing], new)
        known = cache.lookup()
    return torch.stack([known[h] for h in hashes]), len(missing)
