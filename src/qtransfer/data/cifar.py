"""Pairs of CIFAR-10 classes from a local copy in torchvision's format."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from qtransfer.errors import InputError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar_root(path: Path | None) -> Path:
    """The folder holding cifar-10-batches-py/ (given it or the batches folder itself), or a clear error."""
    how = (f"download the Python version of CIFAR-10 ({CIFAR_URL}, 163 MB), extract it so that "
           "DIR/cifar-10-batches-py/ exists, and pass --data DIR (or, with internet: python -c \"import torchvision; "
           "torchvision.datasets.CIFAR10('DIR', download=True)\")")
    if path is None:
        raise InputError(f"reproduce cifar needs a local CIFAR-10: {how}")
    path = Path(path)
    if path.name == "cifar-10-batches-py":
        path = path.parent
    if not (path / "cifar-10-batches-py").is_dir():
        raise InputError(f"no CIFAR-10 at {path} (no cifar-10-batches-py/ inside): {how}")
    return path


def load_cifar(root: Path, train: bool) -> Any:
    """torchvision's CIFAR10 split, its files checked against torchvision's md5 sums."""
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(str(root), train=train, download=False)
    except RuntimeError as err:
        raise InputError(f"CIFAR-10 at {root} is incomplete or corrupt ({err}); download it again "
                         f"from {CIFAR_URL}") from err


class CifarPair(Dataset):
    """The images of two CIFAR-10 classes, labelled 0 and 1 in the given order, transformed for a backbone."""

    def __init__(self, cifar: Any, classes: tuple[str, str], transform: Any):
        wanted = [CIFAR_CLASSES.index(c) for c in classes]
        self.index = [i for i, t in enumerate(cifar.targets) if t in wanted]
        self.labels = [wanted.index(cifar.targets[i]) for i in self.index]
        self.data, self.transform = cifar.data, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.data[self.index[i]])), self.labels[i]

    def keys(self) -> list[str]:
        """Content hash of each image's pixels, the feature cache's key."""
        return [hashlib.sha256(self.data[i].tobytes()).hexdigest() for i in self.index]


def cifar_pair_folder(root: Path, classes: tuple[str, str], dest: Path) -> Path:
    """Two CIFAR-10 classes written as an image folder, dest/cifar_<a>_<b>/{train,val}/<class>/<index>.png (train:
    CIFAR-10's training batches, val: its test batch), so that every command reads them like any other folder.
    Written atomically once; a complete folder is reused."""
    import os
    import tempfile

    root = cifar_root(root)
    folder = Path(dest) / f"cifar_{classes[0]}_{classes[1]}"
    if folder.is_dir():
        return folder
    Path(dest).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{folder.name}-") as tmp:
        staged = Path(tmp) / folder.name
        for split, train in (("train", True), ("val", False)):
            cifar = load_cifar(root, train)
            wanted = [CIFAR_CLASSES.index(c) for c in classes]
            for i, target in enumerate(cifar.targets):
                if target in wanted:
                    path = staged / split / CIFAR_CLASSES[target] / f"{i:05d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(cifar.data[i]).save(path)
        os.replace(staged, folder)
    return folder
