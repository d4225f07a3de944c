"""The feature cache: computed once, reused, safe against torn entries and concurrent writers."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from support.real_images import real_subset
from torch import nn
from torch.utils.data import Dataset

from qtransfer.features.cache import FeatureCache, extractor_key
from qtransfer.features.extraction import cached_features


class CountingImages(Dataset):
    """Stand-in image files: item i is a tensor made from file i's bytes; counts reads."""

    def __init__(self, paths: list[Path]):
        self.paths, self.reads = paths, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        self.reads += 1
        data = torch.tensor(list(self.paths[i].read_bytes()[:4]), dtype=torch.float32)
        return data, 0


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / "images" / f"img {i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i, i + 1, i + 2, i + 3]))
        paths.append(p)
    return paths


torch.manual_seed(0)  # every spawned process must build the same stand-in backbone
BACKBONE = nn.Linear(4, 3)


def _features(paths, cache):
    ds = CountingImages(paths)
    feats, computed = cached_features(BACKBONE, ds, paths, cache, torch.device("cpu"), batch_size=2)
    return feats, computed, ds.reads


def test_second_run_reads_no_image_and_gives_identical_features(tmp_path: Path) -> None:
    paths = _files(tmp_path, 5)
    key = extractor_key("toy", "w1", "transform")
    first, computed, reads = _features(paths, FeatureCache(tmp_path / "cache", key))
    assert computed == 5 and reads == 5
    again, computed, reads = _features(paths, FeatureCache(tmp_path / "cache", key))
    assert computed == 0 and reads == 0
    assert torch.equal(first, again)
    with torch.no_grad():
        torch.testing.assert_close(first, BACKBONE(torch.stack([CountingImages(paths)[i][0] for i in range(5)])))


def test_only_new_images_are_computed_and_keys_separate_extractors(tmp_path: Path) -> None:
    paths = _files(tmp_path, 6)
    cache = FeatureCache(tmp_path / "cache", extractor_key("toy", "w1", "t"))
    _features(paths[:4], cache)
    _, computed, reads = _features(paths, FeatureCache(tmp_path / "cache", extractor_key("toy", "w1", "t")))
    assert computed == 2 and reads == 2
    other = FeatureCache(tmp_path / "cache", extractor_key("toy", "w2", "t"))  # other weights: nothing shared
    assert other.lookup() == {}


def test_a_corrupt_entry_is_detected_and_recomputed(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3)
    key = extractor_key("toy", "w", "t")
    first, _, _ = _features(paths, FeatureCache(tmp_path / "cache", key))
    (shard,) = (tmp_path / "cache" / "features" / key).glob("*.npy")
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        again, computed, _ = _features(paths, FeatureCache(tmp_path / "cache", key))
    assert computed == 3 and torch.equal(first, again)


def _writer(root: str, paths: list[str], out: multiprocessing.Queue) -> None:
    cache = FeatureCache(Path(root), extractor_key("toy", "w", "t"))
    feats, _, _ = _features([Path(p) for p in paths], cache)
    out.put(feats.tolist())


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_sharing_a_cache_leave_no_corrupt_entry(tmp_path: Path) -> None:
    paths = [str(p) for p in _files(tmp_path, 40)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "cache"), paths, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert results[0] == results[1]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt shard would warn
        feats, computed, _ = _features([Path(p) for p in paths],
                                       FeatureCache(tmp_path / "cache", extractor_key("toy", "w", "t")))
    assert computed == 0 and feats.tolist() == results[0]


# ------------------------------------------------------------------------------------- memory-mapped shards


def test_features_are_read_memory_mapped_and_equal_the_in_memory_ones(tmp_path: Path) -> None:
    import numpy as np

    from qtransfer.features.cache import MappedFeatures

    paths = _files(tmp_path, 7)
    cache = FeatureCache(tmp_path / "cache", extractor_key("toy", "w", "t"))
    in_memory, _, _ = _features(paths[:4], cache)  # one shard, then a second for the rest
    mapped, computed = cached_features(BACKBONE, CountingImages(paths), paths, cache, torch.device("cpu"),
                                       batch_size=2, mapped=True)
    assert computed == 3 and isinstance(mapped, MappedFeatures) and mapped.shape == (7, 3)
    assert all(isinstance(a, np.memmap) for a in mapped.arrays) and len(mapped.arrays) == 2
    full = mapped.tensor()
    assert torch.equal(full[:4], in_memory)
    assert torch.equal(mapped[torch.tensor([6, 0, 5])], full[[6, 0, 5]])
    assert torch.equal(mapped[2:6], full[2:6]) and torch.equal(mapped[3], full[3])


def test_a_corrupt_index_file_is_detected_and_recomputed(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3)
    key = extractor_key("toy", "w", "t")
    first, _, _ = _features(paths, FeatureCache(tmp_path / "cache", key))
    (index,) = (tmp_path / "cache" / "features" / key).glob("*.json")
    index.write_text(index.read_text().replace('"sha256": "', '"sha256": "0'))
    with pytest.warns(UserWarning, match="corrupt"):
        again, computed, _ = _features(paths, FeatureCache(tmp_path / "cache", key))
    assert computed == 3 and torch.equal(first, again)


@pytest.mark.slow
def test_a_memory_mapped_cache_trains_to_the_same_metrics_as_in_memory_features(
    hymenoptera: Path, tmp_path: Path
) -> None:
    from qtransfer.config import TrainConfig
    from qtransfer.features.cache import MappedFeatures
    from qtransfer.training.run import train
    from qtransfer.training.run_data import RunData

    root = real_subset(hymenoptera, tmp_path / "data", {"train": 5, "val": 5})
    settings = {"data": str(root), "backbone": "efficientnet_lite0", "epochs": 3, "batch_size": 3}
    mapped_dir, _ = train(TrainConfig(**settings, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "a")))
    memory_dir, _ = train(TrainConfig(**settings, no_cache=True, out=str(tmp_path / "b")))

    def rows(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")}
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert rows(mapped_dir) == rows(memory_dir)
    data = RunData.load(TrainConfig(**settings, cache_dir=str(tmp_path / "cache")))
    data.extract(torch.device("cpu"))  # what train streams from: the cache's shards, not one tensor of every feature
    assert data.features is not None and isinstance(data.features["train"].features, MappedFeatures)


TRAIN_UNDER_A_MEMORY_LIMIT = """
import resource, sys
import torch
from qtransfer.features.cache import FeatureCache
from qtransfer.training.fit import fit_features
from qtransfer.config import TrainConfig
from qtransfer.features.pipeline import FeatureSplit

n = int(sys.argv[2])
features = FeatureCache(sys.argv[1], "big").mapped([f"{i:08d}" for i in range(n)])
val = FeatureSplit(torch.zeros(8, 1024), torch.zeros(8, dtype=torch.long), [])
used = int(next(line for line in open("/proc/self/status") if line.startswith("VmData")).split()[1]) * 1024
# private memory capped at what the process uses now + half the features; mapped files do not count
resource.setrlimit(resource.RLIMIT_DATA, (used + n * 1024 * 4 // 2, resource.RLIM_INFINITY))
try:
    features.tensor()
    print("materialized")
except MemoryError:
    print("features exceed the memory")
fit = fit_features(TrainConfig(head="linear", epochs=1, batch_size=1024),
                   FeatureSplit(features, torch.arange(n) % 2, []), val, 2, torch.device("cpu"))
print("trained", fit.rows[0]["train_acc"])
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's RLIMIT_DATA and /proc")
def test_features_larger_than_the_memory_limit_still_train(tmp_path: Path) -> None:
    import subprocess
    import sys

    n, chunk = 32768, 8192  # 128 MiB of float32 features, in 4 shards
    cache = FeatureCache(tmp_path / "cache", "big")
    generator = torch.Generator().manual_seed(0)
    for start in range(0, n, chunk):
        cache.add([f"{i:08d}" for i in range(start, start + chunk)], torch.randn(chunk, 1024, generator=generator))
    done = subprocess.run([sys.executable, "-c", TRAIN_UNDER_A_MEMORY_LIMIT, str(tmp_path / "cache"), str(n)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "features exceed the memory" and lines[1].startswith("trained")
