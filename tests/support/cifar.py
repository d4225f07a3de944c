"""A CIFAR-10-shaped folder of random images, accepted by torchvision without its md5 checks."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar(root: Path, per_class: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CIFAR-10's python layout under `root` with a few random images per class; torchvision's md5 checks are
    patched out for the test. Returns `root`."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict:
        labels = [c for c in range(10) for _ in range(n)]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        data[:, :1024] = (np.array(labels)[:, None] * 25).astype(np.uint8)  # the red channel tells the class
        return {"data": data, "labels": labels}

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch(per_class)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": LABEL_NAMES}))
    return root
