"""The feature store: shards of feature vectors keyed by extractor and by each image's content hash, read
memory-mapped."""
from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.formats import CACHE_SHARD
from qtransfer.storage import (
    STALE_SECONDS,
    atomic_write,
    atomic_write_text,
    remove_stale_temp_files,
)


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
        self._foreign = False  # a shard of another format was seen (and said so once)
        self._swept = False

    def lookup(self) -> dict[str, tuple[int, int]]:
        """Every cached image of this extractor: image hash -> (shard, row); rereads the folder for new shards."""
        if not self._swept and self.dir.is_dir():
            self._swept = True
            self.sweep()
        for meta in sorted(self.dir.glob("*.json")):
            if meta.name not in self._seen:
                self._seen.add(meta.name)
                self._open(meta)
        return self._index

    def sweep(self) -> None:
        """Remove what killed writers left: their temporary files, and an .npy whose .json never followed (a
        live writer adds it within moments, so one older than storage.STALE_SECONDS is an orphan)."""
        remove_stale_temp_files(self.dir)
        for data in self.dir.glob("*.npy"):
            try:
                if not data.with_suffix(".json").exists() and time.time() - data.stat().st_mtime > STALE_SECONDS:
                    data.unlink()
            except FileNotFoundError:
                pass

    def _open(self, meta: Path) -> None:
        data = meta.with_suffix(".npy")
        try:
            entry = json.loads(meta.read_text())
            if not CACHE_SHARD.readable(entry, meta):
                self._skip_foreign(meta, entry)
                return
            hashes = entry["hashes"]
            array = np.load(data, mmap_mode="r", allow_pickle=False)
            if array.dtype != np.float32 or array.ndim != 2 or len(array) != len(hashes):
                raise InputError(f"array {array.dtype} {array.shape} does not hold {len(hashes)} float32 rows")
            if _checksum(array) != entry["sha256"]:
                raise InputError("checksum mismatch")
        except Exception as err:  # noqa: BLE001 -- whatever a torn or foreign file raises: drop it, recompute its images
            warnings.warn(f"feature cache entry {meta.with_suffix('')} is corrupt ({err}); recomputing it",
                          stacklevel=4)
            data.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return
        shard = len(self._arrays)
        self._arrays.append(array)
        self._index.update((h, (shard, row)) for row, h in enumerate(hashes))

    def _skip_foreign(self, meta: Path, entry: dict[str, Any]) -> None:
        """Leave a shard of another format (another qtransfer's, sharing the cache) unread and in place."""
        if not self._foreign:
            self._foreign = True
            warnings.warn(f"feature cache {self.dir} holds shards of another qtransfer's format (e.g. {meta.name}: "
                          f"format {entry.get('format')!r}; this one writes {CACHE_SHARD.current}); they are not "
                          f"read, and their images are recomputed", stacklevel=5)

    def add(self, hashes: Sequence[str], features: Tensor) -> None:
        """Store features of the images with these hashes as one new shard."""
        array = np.ascontiguousarray(features.detach().cpu().float().numpy())
        name = uuid.uuid4().hex
        atomic_write(self.dir / f"{name}.npy", lambda f: np.save(f, array, allow_pickle=False))
        entry = CACHE_SHARD.stamp({"hashes": list(hashes), "shape": list(array.shape), "sha256": _checksum(array)})
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
        shards, rows = self.shard[positions], self.row[positions]
        if len(self.arrays) == 1:  # one shard (a dataset extracted at once): one gather
            return torch.from_numpy(self.arrays[0][rows])
        out = np.empty((len(positions), self.shape[1]), dtype=np.float32)
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


def in_memory(features: Tensor | MappedFeatures) -> Tensor:
    """The rows as one in-memory tensor (the tensor itself when they are)."""
    return features.tensor() if isinstance(features, MappedFeatures) else features


def concat(parts: Sequence[Tensor | MappedFeatures]) -> Tensor | MappedFeatures:
    """The rows of every part, in order: still memory-mapped when every part is."""
    mapped = [p for p in parts if isinstance(p, MappedFeatures)]
    if len(mapped) == len(parts):
        arrays: list[np.ndarray] = []
        shards, rows = [], []
        for p in mapped:
            shards.append(p.shard + len(arrays))
            rows.append(p.row)
            arrays += p.arrays
        return MappedFeatures(arrays, np.concatenate(shards), np.concatenate(rows))
    return torch.cat([in_memory(p) for p in parts])


def _checksum(array: np.ndarray) -> str:
    h = hashlib.sha256()
    for start in range(0, len(array), 4096):  # block by block, so a mapped array is never copied whole
        h.update(np.ascontiguousarray(array[start : start + 4096]).data)
    return h.hexdigest()
