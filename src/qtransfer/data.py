"""Folders of images -> checked datasets and the reference transforms; dataset download with checksums."""
from __future__ import annotations

import copy
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm import tqdm

from .storage import file_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "root/train/<class>/*.jpg and root/val/<class>/*.jpg"

# PIL's convert("RGB") clips these at 255 instead of scaling; older Pillow opens 16-bit PNGs as "I".
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ChecksumError(ValueError):
    """A downloaded or unpacked file does not have the published sha256."""


class DownloadError(OSError):
    """A dataset could not be fetched (offline, unreachable host, HTTP error)."""


# ---------------------------------------------------------------- splits


def find_splits(root: Path) -> dict[str, Path]:
    """The split folders of a dataset: 'train', 'val' and, when present, 'test'."""
    root = _dataset_root(Path(root))
    found = {name: root / name for name in ("train", "val", "validation", "test") if (root / name).is_dir()}
    if "train" not in found:
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) or "nothing"
        raise FileNotFoundError(f"no train/ folder in {root} (found: {present}); expected the layout {LAYOUT}")
    if "val" in found and "validation" in found:
        raise ValueError(f"{root} has both val/ and validation/; keep one of them")
    val = found.get("val") or found.get("validation")
    if val is None and "test" not in found:
        raise FileNotFoundError(f"no val/ (or validation/) folder in {root}; expected the layout {LAYOUT}")
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
        raise FileNotFoundError(f"dataset folder {root} does not exist; expected the layout {LAYOUT}")
    if (root / "train").is_dir():
        return root
    inner = [d for d in root.iterdir() if (d / "train").is_dir()]
    return inner[0] if len(inner) == 1 else root


def load_splits(
    root: Path, transform: Callable[[Image.Image], Any] | None = None, check: bool = True
) -> dict[str, ImageFolderDataset]:
    """Datasets for every split under `root`, with identical classes; `transform` defaults to the reference's."""
    paths = find_splits(root)
    classes = {name: _find_classes(path) for name, path in paths.items()}
    _require_same_classes(classes, paths)
    if len(classes["train"]) < 2:
        raise ValueError(
            f"{paths['train']} has {len(classes['train'])} class folder(s) {classes['train']}; "
            "classification needs at least 2"
        )
    if transform is None:
        transform = reference_transform()
    return {name: ImageFolderDataset(path, transform, check) for name, path in paths.items()}


def _require_same_classes(classes: dict[str, list[str]], paths: dict[str, Path]) -> None:
    train = set(classes["train"])
    for name, found in classes.items():
        if set(found) != train:
            raise ValueError(
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
    """Read an image file as 8-bit RGB."""
    with Image.open(path) as image:
        return to_rgb(image)


def _image_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an image, or None when it can."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        with Image.open(path) as image:
            # A JPEG decoded at 1/8 scale still reads every byte, so truncation shows, at half the cost.
            image.draft(None, (1, 1))
            to_rgb(image)
    except PermissionError:
        return "permission denied"
    except UnidentifiedImageError:
        return "not an image (format not recognised)"
    except Exception as err:  # PIL raises many types on corrupt data; each one means "skip this file"
        return f"unreadable: {err}"
    return None


def _find_classes(split: Path) -> list[str]:
    """Class folder names, sorted as torchvision's ImageFolder sorts them."""
    classes = sorted(entry.name for entry in os.scandir(split) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {split}; expected {split}/<class>/*.jpg")
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

    def __init__(self, root: Path, transform: Callable[[Image.Image], Any] | None = None, check: bool = True):
        self.root = Path(root)
        self.transform = transform
        self.classes = _find_classes(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        found = [(path, index) for index, name in enumerate(self.classes) for path in _image_files(self.root / name)]
        self.skipped: list[tuple[Path, str]] = _find_unreadable([path for path, _ in found]) if check else []
        bad = {path for path, _ in self.skipped}
        self.samples: list[tuple[Path, int]] = [(path, label) for path, label in found if path not in bad]
        self.targets = [label for _, label in self.samples]
        _warn_skipped(self.root, self.skipped)
        self._require_images_in_every_class()

    def _require_images_in_every_class(self) -> None:
        for name, count in self.counts().items():
            if count == 0:
                raise ValueError(
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


def reference_transform(
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """Resize, CenterCrop, ToTensor, Normalize: the reference's transform, for train and val alike."""
    return transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


# ---------------------------------------------------------------- download


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's zip archive lives and how to check what it holds."""

    url: str
    folder: str  # the archive's top-level folder, which becomes the dataset root
    sha256: str | None = None  # of the archive at `url`
    manifest: str | None = None  # per-file sha256 list in qtransfer/checksums/, paths relative to `folder`


DATASETS: dict[str, DatasetSource] = {
    "hymenoptera": DatasetSource(
        url="https://download.pytorch.org/tutorial/hymenoptera_data.zip",
        folder="hymenoptera_data",
        # As pinned by pytorch/tutorials (.jenkins/download_data.py), whose CI downloads and checks it.
        sha256="fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209",
        manifest="hymenoptera_data.sha256",
    ),
}


def download_dataset(
    name: str, dest: Path, url: str | None = None, sha256: str | None = None, progress: bool = True
) -> Path:
    """Fetch, check and unpack a registered dataset into `dest`; returns its root (dest/<folder>)."""
    source = _source(name)
    dest = Path(dest)
    root = dest / source.folder
    if root.exists():
        _require_intact(root, source)
        return root
    # The registry's sha256 is that of the archive at its own URL; a mirror may re-pack the same
    # files, so without an explicit sha256 it is trusted only once every file matches the manifest.
    expected = sha256 or (source.sha256 if url is None else None)
    url = url or source.url
    archive = dest / f"{source.folder}.zip"
    if archive.is_file():
        _require_sha256(file_sha256(archive), expected, str(archive), "delete it to download it again")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _download(url, archive, expected, progress)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
            raise DownloadError(
                f"could not download the {name!r} dataset from {url} ({reason}). On a machine without internet, "
                f"fetch that file elsewhere and put it at {archive}, or unzip it so that {root}/train/<class>/ "
                "exists; then run again."
            ) from None
    return _unpack(archive, dest, source)


def _source(name: str) -> DatasetSource:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _download(url: str, target: Path, sha256: str | None, progress: bool) -> None:
    """Stream `url` into a temp file beside `target`, check it, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name, disable=not progress
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        advice = "the download is corrupt or not the published file, and was not kept; try again"
        _require_sha256(digest.hexdigest(), sha256, url, advice)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _require_sha256(actual: str, expected: str | None, what: str, advice: str) -> None:
    if expected is not None and actual != expected:
        raise ChecksumError(f"{what} has sha256 {actual}, expected {expected}; {advice}")


def _unpack(archive: Path, dest: Path, source: DatasetSource) -> Path:
    """Extract `archive` beside it and check every file before the dataset folder appears."""
    try:
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
            _refuse_escaping_members(zf, Path(tmp), archive)
            zf.extractall(tmp)
            unpacked = Path(tmp) / source.folder
            if not unpacked.is_dir():
                raise ValueError(f"{archive} has no top-level {source.folder}/ folder; is it the right archive?")
            bad = _mismatches(unpacked, source)
            if bad:
                raise ChecksumError(
                    f"{len(bad)} file(s) in {archive} do not match the published checksums: "
                    f"{'; '.join(bad[:5])}. Delete {archive} and download it again."
                )
            os.replace(unpacked, dest / source.folder)
    except zipfile.BadZipFile as err:
        raise ChecksumError(f"{archive} is not a valid zip archive ({err}); delete it and download it again") from None
    return dest / source.folder


def _refuse_escaping_members(zf: zipfile.ZipFile, target: Path, archive: Path) -> None:
    base = target.resolve()
    for member in zf.namelist():
        if not (base / member).resolve().is_relative_to(base):
            raise ValueError(f"refusing to unpack {archive}: member {member!r} would be written outside {target}")


def _require_intact(root: Path, source: DatasetSource) -> None:
    bad = _mismatches(root, source)
    if bad:
        raise ChecksumError(
            f"{root} exists but {len(bad)} file(s) differ from the published dataset: {'; '.join(bad[:5])}. "
            f"Delete {root} to download it again."
        )


def _mismatches(root: Path, source: DatasetSource) -> list[str]:
    """Files under `root` that are missing or differ from the source's manifest (none when it has no manifest)."""
    problems = []
    for relative, expected in _manifest(source).items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif (actual := file_sha256(path)) != expected:
            problems.append(f"{relative}: sha256 {actual}, expected {expected}")
    return problems


def _manifest(source: DatasetSource) -> dict[str, str]:
    """Relative path -> sha256, from a `sha256sum` listing shipped with the package."""
    if source.manifest is None:
        return {}
    text = (resources.files("qtransfer") / "checksums" / source.manifest).read_text(encoding="utf-8")
    entries = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {os.path.normpath(path.lstrip("*")): digest for digest, path in entries}
