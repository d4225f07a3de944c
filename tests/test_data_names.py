"""`--data NAME`: a registered dataset fetched (or written) into the cache on first use, checked and reused after."""
from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from support.cli import in_process

from qtransfer.data.download import DATASETS, data_folder
from qtransfer.errors import MissingFileError


@pytest.mark.slow
def test_data_hymenoptera_downloads_once_into_the_cache_then_runs_offline(
    hymenoptera: Path, http_server, tmp_path: Path, pixels_backbone: str, capsys, monkeypatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "hymenoptera_data.zip", "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(hymenoptera.rglob("*")):
            zf.write(path, Path("hymenoptera_data") / path.relative_to(hymenoptera))
    published = DATASETS["hymenoptera"]
    # a re-packed archive: without the published archive's sha256, every file is checked against the manifest
    monkeypatch.setitem(DATASETS, "hymenoptera", replace(published, url=http_server(served) + "/hymenoptera_data.zip",
                                                         sha256=None))
    cache = tmp_path / "cache"
    train = ["train", "--data", "hymenoptera", "--backbone", "pixels", "--weights", "none", "--head", "linear",
             "--epochs", "1", "--cache-dir", str(cache), "--out", str(tmp_path / "runs"), "--workers", "0"]
    code, _, err = in_process(capsys, "--quiet", *train)
    assert code == 0, err
    root = cache / "datasets" / "hymenoptera_data"
    assert sorted(p.name for p in (root / "train").iterdir()) == ["ants", "bees"]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["data"] == "hymenoptera"  # resumable on another machine
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"] == {"train": {"ants": 123, "bees": 121}, "val": {"ants": 70, "bees": 83}}

    monkeypatch.setitem(DATASETS, "hymenoptera", replace(published, url="http://127.0.0.1:9/nothing.zip"))
    assert data_folder("hymenoptera", cache) == root  # reused: nothing is fetched again
    victim = next((root / "val" / "bees").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:-10])
    code, _, err = in_process(capsys, "--quiet", *train)
    assert code == 1 and err.count("\n") == 1, err
    assert f"{root} exists but 1 file(s) differ from the published dataset" in err and "Delete" in err


def test_data_digits_is_written_into_the_cache_once(tmp_path: Path, monkeypatch) -> None:
    from qtransfer.data import digits

    written = []

    def write(dest: Path) -> Path:  # the real writer, counted (its files are checked in test_digits.py)
        written.append(dest)
        return digits.write_digits(dest)

    monkeypatch.setattr(digits, "digits_layout", lambda: {"train/0/0000.png": digits.to_pixels([[16] * 8] * 8)})
    monkeypatch.setitem(DATASETS, "digits", replace(DATASETS["digits"], generate=write))
    root = data_folder("digits", tmp_path)
    assert root == tmp_path / "datasets" / "digits" and (root / "train" / "0" / "0000.png").is_file()
    stamp = (root / "train" / "0" / "0000.png").stat().st_mtime_ns
    assert data_folder("digits", tmp_path) == root and (root / "train" / "0" / "0000.png").stat().st_mtime_ns == stamp
    assert written == [tmp_path / "datasets"] * 2  # the second call checks the folder and writes nothing


def test_a_folder_wins_over_a_name_and_a_near_name_is_a_hint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()  # a folder of the user's named like a dataset is theirs
    assert data_folder("digits", tmp_path / "cache") == Path("digits")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(MissingFileError, match="hymenoptra is neither a folder nor a dataset name; did you mean "
                                               "--data hymenoptera"):
        data_folder("hymenoptra", tmp_path / "cache")
    assert data_folder("some/missing/folder") == Path("some/missing/folder")  # the image loader says what is missing
