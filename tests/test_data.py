"""Folders of images become checked datasets with the reference's counts; downloads are checked before use."""
from __future__ import annotations

import hashlib
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.network import dead_url
from torchvision.datasets import ImageFolder

from qtransfer.data.download import DATASETS, download_dataset
from qtransfer.data.images import (
    ImageFolderDataset,
    find_splits,
    load_image,
    load_splits,
)
from qtransfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, reference_transform
from qtransfer.errors import ChecksumError, DownloadError


@pytest.fixture(scope="module")
def splits(hymenoptera):
    return load_splits(hymenoptera)


def tiny_image(path: Path, color=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def make_dataset(root: Path, layout: dict[str, list[str]]) -> Path:
    """One small image per class folder, e.g. {"train": ["ants", "bees"], "val": ["ants", "bees"]}."""
    for split, classes in layout.items():
        for name in classes:
            tiny_image(root / split / name / "a.png")
    return root


def copy_some(hymenoptera: Path, dest: Path, per_class: int = 3) -> Path:
    """A few real images per class of the train split."""
    for name in ("ants", "bees"):
        (dest / name).mkdir(parents=True)
        for path in sorted((hymenoptera / "train" / name).glob("*.jpg"))[:per_class]:
            shutil.copy(path, dest / name)
    return dest


# ---------------------------------------------------------------- the real dataset


def test_real_dataset_has_the_reference_counts(splits):
    assert list(splits) == ["train", "val"]
    assert splits["train"].classes == ["ants", "bees"]
    assert splits["train"].class_to_idx == {"ants": 0, "bees": 1}
    assert len(splits["train"]) == 244 and splits["train"].counts() == {"ants": 123, "bees": 121}
    assert len(splits["val"]) == 153 and splits["val"].counts() == {"ants": 70, "bees": 83}
    assert splits["train"].skipped == [] and splits["val"].skipped == []


def test_samples_match_torchvision_imagefolder_exactly(splits, hymenoptera):
    reference = ImageFolder(str(hymenoptera / "train"))
    assert [(str(path), label) for path, label in splits["train"].samples] == reference.samples
    assert splits["train"].targets == reference.targets


def test_gif_is_ignored_and_the_file_with_a_space_is_read(splits, hymenoptera):
    names = {path.name: label for path, label in splits["train"].samples}
    assert names["ant photos.jpg"] == 0
    assert names["formica.jpeg"] == 0
    assert (hymenoptera / "train/ants/imageNotFound.gif").exists()
    assert "imageNotFound.gif" not in names


def test_item_is_a_normalised_224_crop(splits):
    x, label = splits["val"][0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and label == 0

    # Resize the short side to 256 (long side truncated, as torchvision does), crop the centre 224.
    with Image.open(splits["val"].samples[0][0]) as file:
        image = file.convert("RGB")
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    resized = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32) / 255
    top, left = round((size[1] - 224) / 2), round((size[0] - 224) / 2)
    crop = resized[top : top + 224, left : left + 224]
    expected = (crop - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_reference_transform_settings():
    resize, crop, _, normalize = reference_transform().transforms
    assert resize.size == 256 and crop.size == (224, 224)
    assert normalize.mean == (0.485, 0.456, 0.406) and normalize.std == (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- bad files and image modes


def test_unreadable_files_are_skipped_with_one_warning(hymenoptera, tmp_path):
    root = copy_some(hymenoptera, tmp_path / "train")
    (root / "ants" / "empty.jpg").touch()
    real = sorted((root / "ants").glob("0*.jpg"))[0].read_bytes()
    (root / "ants" / "truncated.jpg").write_bytes(real[: len(real) // 2])
    (root / "bees" / "page.jpg").write_text("<html><body>404 Not Found</body></html>")

    with pytest.warns(UserWarning) as record:
        ds = ImageFolderDataset(root)

    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 3 unreadable" in message
    assert all(name in message for name in ("empty.jpg", "truncated.jpg", "page.jpg"))
    reasons = {path.name: reason for path, reason in ds.skipped}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["truncated.jpg"].startswith("unreadable: image file is truncated")
    assert reasons["page.jpg"] == "not an image (format not recognised)"
    assert ds.counts() == {"ants": 3, "bees": 3}
    assert all(path.name not in reasons for path, _ in ds.samples)


def test_permission_denied_is_reported(hymenoptera, tmp_path, monkeypatch):
    root = copy_some(hymenoptera, tmp_path / "train", per_class=1)
    locked = tiny_image(root / "bees" / "locked.png")
    real_open = Image.open

    def open_unless_locked(fp, *args, **kwargs):
        if Path(fp) == locked:  # chmod 000 cannot stop root, who runs these tests in containers
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_unless_locked)
    with pytest.warns(UserWarning, match="locked.png: permission denied"):
        ds = ImageFolderDataset(root)
    assert ds.skipped == [(locked, "permission denied")]


def palette_red() -> Image.Image:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0])
    return image


@pytest.mark.parametrize(
    "image, filename, pixel",
    [
        (Image.new("L", (4, 4), 128), "grey.png", (128, 128, 128)),
        (palette_red(), "palette.png", (255, 0, 0)),
        (Image.new("RGBA", (4, 4), (10, 20, 30, 0)), "alpha.png", (10, 20, 30)),  # alpha dropped, as torchvision does
        (Image.new("CMYK", (4, 4), (255, 0, 0, 0)), "cyan.tif", (0, 255, 255)),
        (Image.fromarray(np.full((4, 4), 100 * 257, dtype=np.uint16)), "sixteen.png", (100, 100, 100)),
        (Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)), "white16.tif", (255, 255, 255)),
    ],
)
def test_every_mode_becomes_8_bit_rgb(tmp_path, image, filename, pixel):
    (tmp_path / "things").mkdir()
    image.save(tmp_path / "things" / filename)
    ds = ImageFolderDataset(tmp_path)
    loaded, _ = ds[0]
    assert loaded.mode == "RGB" and loaded.getpixel((0, 0)) == pixel
    assert reference_transform(8, 4)(loaded).shape == (3, 4, 4)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 128 * 257, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as saved:
        assert saved.mode == "I;16"
    assert np.asarray(load_image(tmp_path / "ramp.png"))[0, :, 0].tolist() == [0, 1, 128, 255]


# ---------------------------------------------------------------- layouts and their errors


def test_validation_folder_is_accepted_as_val(tmp_path):
    root = make_dataset(tmp_path, {"train": ["ants", "bees"], "validation": ["ants", "bees"]})
    assert find_splits(root) == {"train": root / "train", "val": root / "validation"}
    assert len(load_splits(root)["val"]) == 2


def test_test_folder_is_kept_as_test(tmp_path):
    root = make_dataset(tmp_path, {"train": ["a", "b"], "val": ["a", "b"], "test": ["a", "b"]})
    assert list(load_splits(root)) == ["train", "val", "test"]


def test_test_folder_stands_in_for_a_missing_val_with_a_warning(tmp_path):
    root = make_dataset(tmp_path, {"train": ["a", "b"], "test": ["a", "b"]})
    with pytest.warns(UserWarning, match="using test/ as the validation split"):
        assert find_splits(root) == {"train": root / "train", "val": root / "test"}


def test_parent_of_the_dataset_folder_is_descended_into(tmp_path):
    inner = make_dataset(tmp_path / "hymenoptera_data", {"train": ["a", "b"], "val": ["a", "b"]})
    (tmp_path / "notes").mkdir()
    assert find_splits(tmp_path)["train"] == inner / "train"


def test_missing_train_names_the_folder_and_the_layout(tmp_path):
    make_dataset(tmp_path, {"val": ["a", "b"]})
    expected = r"no train/ folder in .*\(found: \['val'\]\).*root/train/<class>/\*\.jpg"
    with pytest.raises(FileNotFoundError, match=expected):
        find_splits(tmp_path)


def test_different_classes_in_train_and_val_are_listed(tmp_path):
    root = make_dataset(tmp_path, {"train": ["ants", "bees", "wasps"], "val": ["ants", "bees", "beetles"]})
    with pytest.raises(ValueError, match=r"only in train: \['wasps'\]; only in val: \['beetles'\]"):
        load_splits(root)


def test_class_folder_without_images_is_named(tmp_path):
    root = make_dataset(tmp_path, {"train": ["ants", "bees"], "val": ["ants", "bees"]})
    (root / "val" / "bees" / "a.png").rename(root / "val" / "bees" / "a.gif")
    with pytest.raises(ValueError, match=r"class folder .*val/bees has no readable images"):
        load_splits(root)


def test_a_single_class_is_refused(tmp_path):
    root = make_dataset(tmp_path, {"train": ["ants"], "val": ["ants"]})
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \['ants'\]; classification needs at least 2"):
        load_splits(root)


# ---------------------------------------------------------------- download


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archive(hymenoptera, tmp_path_factory) -> Path:
    """The real dataset zipped as the published archive is: one top-level hymenoptera_data/ folder."""
    path = tmp_path_factory.mktemp("served") / "hymenoptera_data.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # JPEGs don't compress; storing is fast
        for file in sorted(hymenoptera.rglob("*")):
            zf.write(file, Path("hymenoptera_data") / file.relative_to(hymenoptera))
    return path


def test_registry_points_at_the_published_archive():
    source = DATASETS["hymenoptera"]
    assert source.url == "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
    assert source.sha256 == "fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209"


def test_download_unpacks_a_dataset_that_loads(archive, http_server, tmp_path):
    dest = tmp_path / "data"
    root = download_dataset("hymenoptera", dest, url=http_server(archive.parent) + "/hymenoptera_data.zip")

    assert root == dest / "hymenoptera_data"
    assert sorted(p.name for p in dest.iterdir()) == ["hymenoptera_data", "hymenoptera_data.zip"]
    assert sha256(dest / "hymenoptera_data.zip") == sha256(archive)
    splits = load_splits(root)
    assert splits["train"].counts() == {"ants": 123, "bees": 121}
    assert splits["val"].counts() == {"ants": 70, "bees": 83}

    # Already there and intact: nothing is fetched, so an unreachable URL does not matter.
    assert download_dataset("hymenoptera", dest, url=dead_url("hymenoptera_data.zip")) == root


def test_real_dataset_matches_the_shipped_checksums(hymenoptera):
    assert download_dataset("hymenoptera", hymenoptera.parent, url=dead_url("hymenoptera_data.zip")) == hymenoptera


def test_tampered_dataset_folder_is_reported(hymenoptera, tmp_path):
    root = shutil.copytree(hymenoptera, tmp_path / "hymenoptera_data")
    (root / "val" / "bees" / "72100438_73de9f17af.jpg").write_bytes(b"not the image")
    with pytest.raises(ChecksumError, match=r"1 file\(s\) differ.*val/bees/72100438_73de9f17af.jpg.*Delete"):
        download_dataset("hymenoptera", tmp_path, url=dead_url("hymenoptera_data.zip"))


def test_corrupted_archive_fails_naming_both_hashes(archive, http_server, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (served / "hymenoptera_data.zip").write_bytes(data)
    good, bad = sha256(archive), hashlib.sha256(data).hexdigest()
    url = http_server(served) + "/hymenoptera_data.zip"
    monkeypatch.setitem(DATASETS, "hymenoptera", replace(DATASETS["hymenoptera"], url=url, sha256=good))

    dest = tmp_path / "data"
    with pytest.raises(ChecksumError, match=f"has sha256 {bad}, expected {good}"):
        download_dataset("hymenoptera", dest, progress=False)
    assert list(dest.iterdir()) == []  # neither the bad archive nor a dataset folder is left behind


def test_archive_placed_by_hand_is_used_without_network(archive, tmp_path, monkeypatch):
    offline = replace(DATASETS["hymenoptera"], url=dead_url("hymenoptera_data.zip"), sha256=sha256(archive))
    monkeypatch.setitem(DATASETS, "hymenoptera", offline)
    dest = tmp_path / "data"
    dest.mkdir()
    shutil.copy(archive, dest / "hymenoptera_data.zip")
    root = download_dataset("hymenoptera", dest)
    assert len(ImageFolderDataset(root / "val", check=False)) == 153


def test_wrong_archive_placed_by_hand_is_not_overwritten(tmp_path):
    (tmp_path / "hymenoptera_data.zip").write_bytes(b"an older archive")
    expected = DATASETS["hymenoptera"].sha256
    with pytest.raises(ChecksumError, match=f"zip has sha256 [0-9a-f]{{64}}, expected {expected}; delete it"):
        download_dataset("hymenoptera", tmp_path)
    assert (tmp_path / "hymenoptera_data.zip").read_bytes() == b"an older archive"


def test_mirror_archive_is_checked_file_by_file(hymenoptera, http_server, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "hymenoptera_data.zip", "w") as zf:
        zf.write(hymenoptera / "train/bees/16838648_415acd9e3f.jpg", "hymenoptera_data/train/ants/0013035.jpg")

    dest = tmp_path / "data"
    with pytest.raises(ChecksumError, match=r"train/ants/0013035.jpg: sha256 [0-9a-f]{64}, expected 3238568557b6"):
        download_dataset("hymenoptera", dest, url=http_server(served) + "/hymenoptera_data.zip", progress=False)
    assert not (dest / "hymenoptera_data").exists()


def test_unreachable_url_says_how_to_place_the_data_by_hand(tmp_path):
    url = dead_url("hymenoptera_data.zip")
    with pytest.raises(DownloadError) as info:
        download_dataset("hymenoptera", tmp_path, url=url, progress=False)
    message = str(info.value)
    assert url in message and "Connection refused" in message
    assert str(tmp_path / "hymenoptera_data.zip") in message and "train/<class>/" in message


def test_archive_member_escaping_dest_is_refused(http_server, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "hymenoptera_data.zip", "w") as zf:
        zf.writestr("hymenoptera_data/train/ants/a.jpg", b"x")
        zf.writestr("../evil", b"gotcha")

    dest = tmp_path / "data"
    with pytest.raises(ValueError, match=r"member '\.\./evil' would be written outside"):
        download_dataset("hymenoptera", dest, url=http_server(served) + "/hymenoptera_data.zip", progress=False)
    assert not (dest / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (dest / "hymenoptera_data").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_data_command_downloads_through_the_local_server(archive, http_server, tmp_path):
    import subprocess
    import sys

    url = http_server(archive.parent) + "/hymenoptera_data.zip"
    # both processes at once: each spends most of its time starting up, on one core
    fetch, fail = (subprocess.Popen([sys.executable, "-m", "qtransfer", "data", "hymenoptera",
                                     "--dest", dest, "--url", u],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for dest, u in ((str(tmp_path), url), (str(tmp_path / "x"), dead_url("hymenoptera_data.zip"))))
    stdout, stderr = fetch.communicate(timeout=300)
    assert fetch.returncode == 0, stderr
    assert str(tmp_path / "hymenoptera_data") in stdout
    _, stderr = fail.communicate(timeout=300)
    assert fail.returncode == 1 and "Traceback" not in stderr and "could not download" in stderr
