"""`qtransfer data digits`: scikit-learn's digits as an image folder, and a 10-class run trained on it."""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from qtransfer import cli
from qtransfer.data.digits import FRACTIONS, write_digits
from qtransfer.data.download import download_dataset
from qtransfer.data.images import load_splits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits written once for this module's tests."""
    return write_digits(tmp_path_factory.mktemp("data"))


def _files(root: Path) -> dict[str, list[Path]]:
    return {split: sorted((root / split).rglob("*.png")) for split in ("train", "val", "test")}


def test_every_digit_is_written_once_in_stratified_splits(digits: Path) -> None:
    y = load_digits().target
    files = _files(digits)
    indices = {split: [int(p.stem) for p in paths] for split, paths in files.items()}
    everything = sorted(i for ids in indices.values() for i in ids)
    assert everything == list(range(1797))  # each image in exactly one split
    # test: 20% of 1,797, val: 25% of the rest, both rounded up
    assert [len(files[s]) for s in ("train", "val", "test")] == [1077, 360, 360]
    for split, paths in files.items():
        assert all(p.parent.name == str(y[int(p.stem)]) for p in paths)  # the folder is the image's class
        per_class = Counter(int(p.parent.name) for p in paths)
        for c in range(10):  # every class split 60 / 20 / 20 up to rounding
            assert abs(per_class[c] - FRACTIONS[split] * (y == c).sum()) <= 1, (split, c)
    assert sorted(p.name for p in digits.iterdir()) == ["test", "train", "val"]


def test_the_pngs_decode_to_the_original_8x8_values(digits: Path) -> None:
    images = load_digits().images
    for path in [p for paths in _files(digits).values() for p in paths]:
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (32, 32)
            pixels = np.asarray(image).astype(float)
        small = pixels[::4, ::4]
        assert np.array_equal(pixels, np.kron(small, np.ones((4, 4))))  # nearest-neighbour blocks
        assert np.array_equal(np.rint(small * 16 / 255), images[int(path.stem)])


def test_a_rerun_is_a_no_op_and_a_different_folder_is_refused(digits: Path, tmp_path: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in digits.rglob("*")}
    assert write_digits(digits.parent) == digits
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in digits.rglob("*")} == before
    assert [p.name for p in digits.parent.iterdir()] == ["digits"]  # no temporary folder left behind

    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not the digits dataset \(1797 file\(s\) missing, e.g. test/0/\d+.png; "
                                         r"1 file\(s\) not part of it, e.g. notes.txt\); delete it"):
        write_digits(tmp_path)
    assert [p.name for p in (tmp_path / "digits").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


def test_a_changed_image_is_found_and_an_empty_folder_is_filled(digits: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(digits, tmp_path / "changed" / "digits")
    one = sorted((copy / "val" / "3").iterdir())[0]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(one)
    with pytest.raises(ValueError, match=rf"\(1 file\(s\) with other pixels, e.g. val/3/{one.name}\)"):
        write_digits(copy.parent)
    (tmp_path / "empty" / "digits").mkdir(parents=True)
    assert len(list(write_digits(tmp_path / "empty").rglob("*.png"))) == 1797


def test_the_data_command_finds_the_digits_in_place_and_refuses_a_url(digits: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["data", "digits", "--dest", str(digits.parent)]) == 0
    assert f"digits is ready in {digits}" in capsys.readouterr().out
    assert download_dataset("digits", digits.parent) == digits  # the library's entry point dispatches too
    assert cli.main(["data", "digits", "--dest", str(digits.parent), "--url", "http://127.0.0.1:9/x.zip"]) == 1
    assert "drop --url" in capsys.readouterr().err
    assert cli.main(["data", "digit", "--dest", str(digits.parent)]) == 1
    assert "Did you mean 'digits'?" in capsys.readouterr().err


def test_the_folder_loads_with_ten_classes_and_a_test_split(digits: Path) -> None:
    splits = load_splits(digits)
    assert set(splits) == {"train", "val", "test"}
    assert all(ds.classes == [str(c) for c in range(10)] for ds in splits.values())
    assert sum(len(ds) for ds in splits.values()) == 1797 and not any(ds.skipped for ds in splits.values())
    image, label = splits["test"][0]
    assert tuple(image.shape) == (3, 224, 224) and label == 0


@pytest.mark.slow
def test_a_ten_class_run_writes_a_10x10_confusion_and_a_multiclass_roc_auc(
    digits: Path, tmp_path: Path, pixels_backbone: str
) -> None:
    from qtransfer.config import TrainConfig
    from qtransfer.training.run import train

    config = TrainConfig(data=str(digits), backbone="pixels", weights="none", head="linear", epochs=2, lr=0.01,
                         batch_size=16, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "runs"), num_workers=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="backbone pixels has random weights")
        run_dir, summary = train(config)
    assert summary["classes"] == [str(c) for c in range(10)]
    assert np.array(summary["confusion"]).shape == (10, 10) and np.sum(summary["confusion"]) == 360
    held = summary["held_out"]
    assert held["images"] == 360 and np.array(held["confusion"]).shape == (10, 10)
    assert 0.9 < held["roc_auc"] <= 1.0 and held["accuracy"] > 0.7  # raw pixels separate digits well
    assert json.loads((run_dir / "summary.json").read_text())["held_out"]["roc_auc"] == held["roc_auc"]
    for figure in ("confusion.png", "predictions.png", "curves.png"):
        assert (run_dir / figure).stat().st_size > 0
