"""scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes) written as an image folder with
stratified train / val / test splits: `qtransfer data digits`, a real multi-class dataset that needs no network."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from qtransfer.errors import InputError

FOLDER = "digits"
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
SEED = 0
SCALE = 4  # 8×8 → 32×32 pixels, each value a 4×4 block (nearest neighbour)
LEVELS = 16  # the dataset's pixel values run 0..16; written as round(v · 255 / 16)


def split_indices(y: np.ndarray) -> dict[str, list[int]]:
    """Indices of each split of samples labelled `y`: stratified by class, seeded, 60 / 20 / 20."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(np.arange(y.size), test_size=FRACTIONS["test"], stratify=y, random_state=SEED)
    val_share = FRACTIONS["val"] / (FRACTIONS["train"] + FRACTIONS["val"])
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=SEED)
    return {"train": sorted(train.tolist()), "val": sorted(val.tolist()), "test": sorted(test.tolist())}


def to_pixels(image: np.ndarray) -> np.ndarray:
    """An 8×8 digit (values 0..16) as the 32×32 8-bit greyscale pixels written to its PNG."""
    levels = np.rint(np.asarray(image, dtype=float) * 255 / LEVELS).astype(np.uint8)
    return levels.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def digits_layout() -> dict[str, np.ndarray]:
    """Relative path '<split>/<class>/<index>.png' -> its pixels, for every image of the dataset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {f"{split}/{digits.target[i]}/{i:04d}.png": to_pixels(digits.images[i])
            for split, indices in split_indices(digits.target).items() for i in indices}


def write_digits(dest: Path) -> Path:
    """Write the digits into dest/digits/{train,val,test}/<class>/ (atomically; nothing to do when they are
    already there); returns that folder."""
    dest = Path(dest)
    root = dest / FOLDER
    layout = digits_layout()
    if root.is_dir() and any(root.iterdir()):
        problems = {kind: names for kind, names in _differences(root, layout).items() if names}
        if problems:
            found = "; ".join(f"{len(names)} file(s) {kind}, e.g. {names[0]}" for kind, names in problems.items())
            raise InputError(f"{root} exists and is not the digits dataset ({found}); delete it, or pass another "
                             "--dest")
        return root
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} exists and is a file; delete it, or pass another --dest")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{FOLDER}-") as tmp:
        staged = Path(tmp) / FOLDER
        for relative, pixels in layout.items():
            path = staged / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
        if root.is_dir():
            root.rmdir()  # empty: checked above
        os.replace(staged, root)
    return root


def _differences(root: Path, layout: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Files of `layout` missing from `root`, files in `root` not part of it, and files with other pixels."""
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    differ = []
    for name in sorted(found & layout.keys()):
        try:
            with Image.open(io.BytesIO((root / name).read_bytes())) as image:
                same = image.mode == "L" and np.array_equal(np.asarray(image), layout[name])
        except OSError:
            same = False
        if not same:
            differ.append(name)
    return {"missing": sorted(layout.keys() - found), "not part of it": sorted(found - layout.keys()),
            "with other pixels": differ}
