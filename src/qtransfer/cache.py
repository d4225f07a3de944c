"""Features computed once and reused: stored by extractor and by each image file's content hash."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from . import distributed
from .storage import atomic_write, atomic_write_text, file_sha256

# Batches per shard file: bounds the memory an extraction holds before it writes (256 × 32 images).
SHARD_BATCHES = 256


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

    A shard is `<id>.npy` (float32 rows, read memory-mapped) and `<id>.json` (the rows' image hashes and
    the array's sha256), each written atomically, the .json last: a shard exists once its .json does. Runs
    and ranks sharing the cache each write their own shards under new names, so none sees a torn entry;
    a shard that fails to load or to verify is deleted and its images are recomputed.
    """

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / "features" / key
        self._index: dict[str, tuple[int, int]] = {}
        self._arrays: list[np.ndarray] = []
        self._seen: set[str] = set()

    def lookup(self) -> dict[str, tuple[int, int]]:
        """Every cached image of this extractor: image hash -> (shard, row); rereads the folder for new shards."""
        for meta in sorted(self.dir.glob("*.json")):
            if meta.name not in self._seen:
                self._seen.add(meta.name)
                self._open(meta)
        return self._index

    def _open(self, meta: Path) -> None:
        data = meta.with_suffix(".npy")
        try:
            entry = json.loads(meta.read_text())
            hashes = entry["hashes"]
            array = np.load(data, mmap_mode="r", allow_pickle=False)
            if array.dtype != np.float32 or array.ndim != 2 or len(array) != len(hashes):
                raise ValueError(f"array {array.dtype} {array.shape} does not hold {len(hashes)} float32 rows")
            if _checksum(array) != entry["sha256"]:
                raise ValueError("checksum mismatch")
        except Exception as err:  # a torn or foreign file: drop it, its images get recomputed
            warnings.warn(f"feature cache entry {meta.with_suffix('')} is corrupt ({err}); recomputing it", stacklevel=4)
            data.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return
        shard = len(self._arrays)
        self._arrays.append(array)
        self._index.update((h, (shard, row)) for row, h in enumerate(hashes))

    def add(self, hashes: Sequence[str], features: Tensor) -> None:
        """Store features of the images with these hashes as one new shard."""
        array = np.ascontiguousarray(features.detach().cpu().float().numpy())
        name = uuid.uuid4().hex
        atomic_write(self.dir / f"{name}.npy", lambda f: np.save(f, array, allow_pickle=False))
        entry = {"hashes": list(hashes), "shape": list(array.shape), "sha256": _checksum(array)}
        atomic_write_text(self.dir / f"{name}.json", json.dumps(entry))

    def mapped(self, hashes: Sequence[str]) -> MappedFeatures:
        """Features of these images (all cached), read from the shards on demand."""
        index = self.lookup()
        places = np.array([index[h] for h in hashes], dtype=np.int64).reshape(-1, 2)
        return MappedFeatures(self._arrays, places[:, 0], places[:, 1])


class MappedFeatures:
    """An (N, F) float32 matrix whose rows live in memory-mapped shard files; indexing reads only those rows."""

    def __init__(self, arrays: Sequence[np.ndarray], shard: np.ndarray, row: np.ndarray):
        self.arrays, self.shard, self.row = list(arrays), shard, row
        width = arrays[int(shard[0])].shape[1] if len(shard) else 0
        self.shape = torch.Size((len(shard), width))

    def __len__(self) -> int:
        return len(self.shard)

    def dim(self) -> int:
        """Always 2: one feature vector per image."""
        return 2

    def __getitem__(self, index: Tensor | slice | Sequence[int] | int) -> Tensor:
        """Rows as a new in-memory tensor (one row for an int index)."""
        if isinstance(index, int):
            return self[[index]][0]
        positions = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        out = np.empty((len(positions), self.shape[1]), dtype=np.float32)
        shards, rows = self.shard[positions], self.row[positions]
        for s in np.unique(shards):
            take = shards == s
            out[take] = self.arrays[int(s)][rows[take]]
        return torch.from_numpy(out)

    def to(self, device: torch.device) -> MappedFeatures:
        """Itself: rows move to a device batch by batch, as they are read."""
        return self

    def tensor(self) -> Tensor:
        """Every row in one in-memory tensor."""
        return self[slice(None)]


def _checksum(array: np.ndarray) -> str:
    h = hashlib.sha256()
    for start in range(0, len(array), 4096):  # block by block, so a mapped array is never copied whole
        h.update(np.ascontiguousarray(array[start : start + 4096]).data)
    return h.hexdigest()


def compute_features(
    backbone: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
) -> Tensor:
    """Run the frozen backbone over a dataset of (image, label) in batches: features (N, F)."""
    chunks = list(_feature_batches(backbone, dataset, device, batch_size, num_workers, desc))
    return torch.cat(chunks) if chunks else torch.zeros(0)


def _feature_batches(
    backbone: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, num_workers: int, desc: str
) -> Iterator[Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    backbone = backbone.to(device).eval()
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not distributed.is_main()):
            images = images.to(device)
            if images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            yield backbone(images).float().cpu()


def cached_features(
    backbone: nn.Module,
    dataset: Dataset,
    keys: Sequence[Path | str],
    cache: FeatureCache | None,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "features",
    mapped: bool = False,
) -> tuple[Tensor | MappedFeatures, int]:
    """Features (N, F) of a dataset and how many were computed; item i is keyed by keys[i]: an image file
    (keyed by its content hash) or a ready content key. With `mapped`, the features stay in the cache's
    memory-mapped shards. Under torchrun the ranks share the missing images' extraction."""
    if cache is None:
        return compute_features(backbone, dataset, device, batch_size, num_workers, desc), len(keys)
    hashes = content_keys(keys)
    known = cache.lookup()
    # every rank must split the same list, even if another run adds shards meanwhile: rank 0's view decides
    missing = distributed.broadcast(sorted({h: i for i, h in enumerate(hashes) if h not in known}.values()))
    if missing:
        extract(backbone, dataset, missing, hashes, cache, device, batch_size, num_workers, desc)
        distributed.barrier()
        absent = sum(h not in cache.lookup() for h in dict.fromkeys(hashes))
        if absent:
            raise RuntimeError(
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
    mine = {i: file_sha256(keys[i]) if isinstance(keys[i], Path) else keys[i] for i in share}
    merged: dict[int, str] = {}
    for part in distributed.gather(mine):
        merged.update(part)
    return [merged[i] for i in range(len(keys))]


def extract(
    backbone: nn.Module, dataset: Dataset, indices: Sequence[int], hashes: Sequence[str], cache: FeatureCache,
    device: torch.device, batch_size: int = 32, num_workers: int = 0, desc: str = "features",
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
    for features in _feature_batches(backbone, Subset(dataset, mine), device, batch_size, num_workers, desc):
        pending.append(features)
        if len(pending) == SHARD_BATCHES:
            block = torch.cat(pending)
            cache.add([hashes[i] for i in mine[done : done + len(block)]], block)
            done, pending = done + len(block), []
    if pending:
        block = torch.cat(pending)
        cache.add([hashes[i] for i in mine[done : done + len(block)]], block)
