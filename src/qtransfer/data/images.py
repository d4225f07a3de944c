"""Folders of images -> checked datasets: splits, classes, unreadable files skipped with a reason."""
from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from qtransfer.data.transforms import image_transform
from qtransfer.errors import InputError, MissingFileError

LAYOUT = "root/train/<class>/*.jpg and root/val/<class>/*.jpg"

# PIL's convert("RGB") clips these at 255 instead of scaling; older Pillow opens 16-bit PNGs as "I".
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


# ---------------------------------------------------------------- splits


def find_splits(root: Path) -> dict[str, Path]:
    """The split folders of a dataset: 'train', 'val' and, when present, 'test'."""
    root = _dataset_root(Path(root))
    found = {name: root / name for name in ("train", "val", "validation", "test") if (root / name).is_dir()}
    if "train" not in found:
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) or "nothing"
        raise MissingFileError(f"no train/ folder in {root} (found: {present}); expected the layout {LAYOUT}")
    if "val" in found and "validation" in found:
        raise InputError(f"{root} has both val/ and validation/; keep one of them")
    val = found.get("val") or found.get("validation")
    if val is None and "test" not in found:
        raise MissingFileError(f"no val/ (or validation/) folder in {root}; expected the layout {LAYOUT}")
    if val is None:
        warnings.warn(f"{root} has no val/ folder; using test/ as the validation split", stacklevel=2)
        return {"train": found["train"], "val": found["test"]}
    splits = {"train": found["train"], "val": val}
    if "test" in found:
        splits["test"] = found["test"]
    return splits


def _dataset_root(root: Path) -> Path:
    """`root`, or its one subfolder holding train/ (an archive unpacked into its own folder)."""
    if not root.is_dir():
        raise MissingFileError(f"dataset folder {root} does not exist; expected the layout {LAYOUT}")
    if (root / "train").is_dir():
        return root
    inner = [d for d in root.iterdir() if (d / "train").is_dir()]
    return inner[0] if len(inner) == 1 else root


def load_splits(
    root: Path, transform: Callable[[Image.Image], Any] | None = None, check: bool = True,
    trusted: Callable[[Path], bool] = lambda path: False,
) -> dict[str, ImageFolderDataset]:
    """Datasets for every split under `root`, with identical classes; `transform` defaults to the reference's.
    Unreadable files are skipped (see ImageFolderDataset for `check` and `trusted`)."""
    paths = find_splits(root)
    classes = {name: _find_classes(path) for name, path in paths.items()}
    _require_same_classes(classes, paths)
    if len(classes["train"]) < 2:
        raise InputError(
            f"{paths['train']} has {len(classes['train'])} class folder(s) {classes['train']}; "
            "classification needs at least 2"
        )
    if transform is None:
        transform = image_transform()
    return {name: ImageFolderDataset(path, transform, check, trusted) for name, path in paths.items()}


def _require_same_classes(classes: dict[str, list[str]], paths: dict[str, Path]) -> None:
    train = set(classes["train"])
    for name, found in classes.items():
        if set(found) != train:
            raise InputError(
                f"class folders differ between train ({paths['train']}) and {name} ({paths[name]}): "
                f"only in train: {sorted(train - set(found))}; only in {name}: {sorted(set(found) - train)}"
            )


# ---------------------------------------------------------------- images


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB; 16-bit greyscale is scaled to 0..255 rather than clipped."""
    if image.mode in SIXTEEN_BIT_MODES:
        levels = np.asarray(image).astype(np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def load_image(path: Path) -> Image.Image:
    """Read an image file as 8-bit RGB; a file that is not a readable image is an InputError saying why."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError:
        raise MissingFileError(f"image file {path} does not exist") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types on corrupt data
        reason = "empty file" if Path(path).is_file() and Path(path).stat().st_size == 0 else _reason(err)
        raise InputError(f"{path} is not a readable image ({reason}); pass a JPEG, PNG or other image file") from None


def _image_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an image, or None when it can."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        with Image.open(path) as image:
            # A JPEG decoded at 1/8 scale still reads every byte, so truncation shows, at half the cost.
            image.draft(None, (1, 1))
            to_rgb(image)
    except Exception as err:  # noqa: BLE001 - PIL raises many types on corrupt data; each means "skip this file"
        return _reason(err)
    return None


def _reason(err: Exception) -> str:
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, UnidentifiedImageError):
        return "not an image (format not recognised)"
    return f"unreadable: {err}"


def _find_classes(split: Path) -> list[str]:
    """Class folder names, sorted as torchvision's ImageFolder sorts them."""
    classes = sorted(entry.name for entry in os.scandir(split) if entry.is_dir())
    if not classes:
        raise MissingFileError(f"no class folders in {split}; expected {split}/<class>/*.jpg")
    return classes


def _image_files(folder: Path) -> list[Path]:
    """Files with an image extension under `folder`, in torchvision's make_dataset order.

    Symbolic links to folders are followed, but a folder already visited (a link loop) is not entered again.
    """
    seen: set[str] = set()
    walked = []
    for dirpath, dirnames, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            warnings.warn(f"{dirpath} leads back to {real}, already read (a symbolic link loop); skipped",
                          stacklevel=2)
            dirnames.clear()
            continue
        seen.add(real)
        walked.append((dirpath, names))
    return [
        Path(dirpath) / name
        for dirpath, names in sorted(walked)
        for name in sorted(names)
        if name.lower().endswith(IMG_EXTENSIONS)
    ]


def _find_unreadable(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        problems = list(pool.map(_image_problem, paths))
    return [(path, reason) for path, reason in zip(paths, problems) if reason is not None]


def _warn_skipped(root: Path, skipped: list[tuple[Path, str]], shown: int = 20) -> None:
    if not skipped:
        return
    lines = [f"  {path}: {reason}" for path, reason in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more (see .skipped)")
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in {root}:\n" + "\n".join(lines), stacklevel=3)


class ImageFolderDataset(Dataset):
    """Images in root/<class>/, labelled as torchvision's ImageFolder labels them; unreadable files are skipped."""

    def __init__(self, root: Path, transform: Callable[[Image.Image], Any] | None = None, check: bool = True,
                 trusted: Callable[[Path], bool] = lambda path: False):
        """`check` decodes every file to skip unreadable ones, except those `trusted` vouches for (files whose
        exact bytes were decoded before)."""
        self.root = Path(root)
        self.transform = transform
        self.classes = _find_classes(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        found = [(path, index) for index, name in enumerate(self.classes) for path in _image_files(self.root / name)]
        unchecked = [path for path, _ in found if not trusted(path)] if check else []
        self.skipped: list[tuple[Path, str]] = _find_unreadable(unchecked)
        bad = {path for path, _ in self.skipped}
        self.samples: list[tuple[Path, int]] = [(path, label) for path, label in found if path not in bad]
        self.targets = [label for _, label in self.samples]
        _warn_skipped(self.root, self.skipped)
        self._require_images_in_every_class()

    def _require_images_in_every_class(self) -> None:
        for name, count in self.counts().items():
            if count == 0:
                raise InputError(
                    f"class folder {self.root / name} has no readable images "
                    f"(extensions read: {' '.join(IMG_EXTENSIONS)}); add images or remove the folder"
                )

    def subset(self, indices: Sequence[int]) -> ImageFolderDataset:
        """The same dataset restricted to the samples at `indices` (nothing is read again)."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.targets = [label for _, label in part.samples]
        part.skipped = []
        return part

    def counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        return {name: self.targets.count(index) for index, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_image(path)
        return (self.transform(image) if self.transform is not None else image), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}, {len(self)} images, {self.counts()}, skipped={len(self.skipped)})"
