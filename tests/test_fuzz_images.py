"""Fuzzing the data path with hostile files: random bytes, real JPEG and PNG files with damaged headers, cut short or
declaring huge sizes, empty files. A file is either read as an RGB image or skipped with a reason (in a dataset), or
refused as an InputError naming it (read alone, as `predict` reads): never a crash."""
from __future__ import annotations

import itertools
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from support.fuzzing import bounded

from qtransfer.data.images import ImageFolderDataset, _image_problem, load_image
from qtransfer.data.transforms import image_transform
from qtransfer.errors import InputError

COUNTER = itertools.count()
HUGE = st.sampled_from([0, 1, 65_535, 65_536, 100_000, 2**31 - 1, 2**32 - 1])


@pytest.fixture(scope="module")
def real_files(hymenoptera: Path) -> dict[str, bytes]:
    jpeg = min((hymenoptera / "train" / "ants").glob("*.jpg"))
    png = min((hymenoptera / "val").rglob("*.png"), default=None)
    png_bytes = png.read_bytes() if png else _small_png()
    return {"jpeg": jpeg.read_bytes(), "png": png_bytes}


def _small_png() -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 120, 230)).save(out, format="PNG")
    return out.getvalue()


def _png_with_size(png: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    """The PNG with the width and height of its IHDR chunk (bytes 16-24) replaced, its CRC fixed or not."""
    ihdr = png[12:29]
    data = bytearray(png)
    data[16:24] = struct.pack(">II", width, height)
    if fix_crc:
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    assert ihdr[:4] == b"IHDR"
    return bytes(data)


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with the size in its first SOFn frame header replaced (16 bits each, so clipped)."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5:at + 9] = struct.pack(">HH", min(height, 65_535), min(width, 65_535))
            break
    return bytes(data)


@st.composite
def hostile_files(draw: st.DrawFn, real: dict[str, bytes]) -> bytes:
    kind = draw(st.sampled_from(["random", "empty", "flip header", "cut", "huge png", "huge jpeg", "splice",
                                 "header only"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "empty":
        return b""
    base = real[draw(st.sampled_from(sorted(real)))]
    if kind == "flip header":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, min(len(data), 700) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "cut":
        return base[:draw(st.integers(1, len(base) - 1))]
    if kind == "huge png":
        return _png_with_size(real["png"], draw(HUGE), draw(HUGE), fix_crc=draw(st.booleans()))
    if kind == "huge jpeg":
        return _jpeg_with_size(real["jpeg"], draw(HUGE), draw(HUGE))
    if kind == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.binary(min_size=1, max_size=256)) + base[at + draw(st.integers(0, 256)):]
    return base[:draw(st.integers(2, 64))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-images")


@bounded(60)
@given(data=st.data())
def test_a_hostile_file_is_read_or_refused_by_name(data: st.DataObject, real_files: dict[str, bytes],
                                                    folder: Path) -> None:
    content = data.draw(hostile_files(real_files))
    path = folder / f"file-{next(COUNTER)}{data.draw(st.sampled_from(['.jpg', '.png', '.JPEG', '.bmp']))}"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        problem = _image_problem(path)
        if problem is None:
            image = load_image(path)
            assert image.mode == "RGB" and image.width > 0 and image.height > 0
        else:
            assert isinstance(problem, str) and problem
            with pytest.raises(InputError, match="is not a readable image") as refused:
                load_image(path)
            assert str(path) in str(refused.value)


@bounded(20)
@given(data=st.data())
def test_a_dataset_with_hostile_files_skips_them_and_loads_the_rest(data: st.DataObject, real_files: dict[str, bytes],
                                                                     folder: Path) -> None:
    root = folder / f"set-{next(COUNTER)}"
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        (root / cls / "good.jpg").write_bytes(real_files["jpeg"])
    hostile = data.draw(st.lists(hostile_files(real_files), min_size=1, max_size=4))
    for i, content in enumerate(hostile):
        (root / data.draw(st.sampled_from(["ants", "bees"])) / f"bad-{i}.png").write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ImageFolderDataset(root, transform=image_transform(resize=16, crop=16))
    assert len(ds) + len(ds.skipped) == 2 + len(hostile)
    assert {p.name for p, _ in ds.samples} >= {"good.jpg"}
    assert all(isinstance(reason, str) and reason for _, reason in ds.skipped)
    images = [ds[i][0] for i in range(len(ds))]
    assert all(isinstance(x, torch.Tensor) and x.shape == (3, 16, 16) and torch.isfinite(x).all() for x in images)
