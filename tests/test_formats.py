"""Versioned files: checkpoints, cache shards, holdout.json and run directories record their format; one of a newer
(or unreadable) format is one line saying which version it is and what to do, and one from before versions were
recorded still loads."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from support.cli import in_process

from qtransfer.errors import InputError
from qtransfer.features.cache import FeatureCache
from qtransfer.formats import CACHE_SHARD, CHECKPOINT, HOLDOUT, RUN_DIR, RUN_MARKER
from qtransfer.runtime import check_run_dir, new_run_dir
from qtransfer.training.checkpoints import load_checkpoint


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err and "this is a bug" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def run_copy(finished_run: tuple[Path, dict], tmp_path: Path) -> Path:
    run_dir, _ = finished_run
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def _rewrite_checkpoint(path: Path, **changes: object) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    torch.save(state, path)


def test_new_files_record_their_format(finished_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = finished_run
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run_dir / name)["format"] == CHECKPOINT.current
    assert json.loads((run_dir / RUN_MARKER).read_text())["format"] == RUN_DIR.current
    assert check_run_dir(run_dir) == RUN_DIR.current
    cache = FeatureCache(tmp_path, "key")
    cache.add(["h1", "h2"], torch.ones(2, 3))
    (meta,) = cache.dir.glob("*.json")
    assert json.loads(meta.read_text())["format"] == CACHE_SHARD.current


def test_a_checkpoint_of_a_newer_format_is_one_line_through_evaluate_and_resume(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = CHECKPOINT.current + 1
    _rewrite_checkpoint(run_copy / "best.pt", format=newer)
    code, _, err = in_process(capsys, "--quiet", "evaluate", str(run_copy))
    _one_line_error(code, err, f"{run_copy / 'best.pt'} was written by a newer qtransfer",
                    f"checkpoint format {newer}", "pip install -U qtransfer")
    _rewrite_checkpoint(run_copy / "last.pt", format=newer)
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_copy))
    _one_line_error(code, err, f"{run_copy / 'last.pt'} was written by a newer qtransfer")
    _rewrite_checkpoint(run_copy / "best.pt", format="two")
    code, _, err = in_process(capsys, "--quiet", "predict", str(run_copy), str(run_copy / "curves.png"))
    _one_line_error(code, err, "records format 'two', not a version number")


def test_a_run_directory_without_versions_still_loads(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("best.pt", "last.pt"):
        _rewrite_checkpoint(run_copy / name, format=None)
    (run_copy / RUN_MARKER).unlink()
    assert "format" not in torch.load(run_copy / "best.pt", weights_only=True)
    assert check_run_dir(run_copy) == 1
    code, out, err = in_process(capsys, "--quiet", "predict", str(run_copy), str(run_copy / "curves.png"), "--json")
    assert code == 0, err
    assert json.loads(out)[0]["image"].endswith("curves.png")


def test_a_run_directory_of_a_newer_format_is_one_line_for_every_command(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = run_copy / RUN_MARKER
    marker.write_text(json.dumps({"format": RUN_DIR.current + 1}))
    for argv in (["evaluate", str(run_copy)], ["predict", str(run_copy), str(run_copy / "curves.png")],
                 ["train", "--resume", str(run_copy)], ["noise-scan", str(run_copy)]):
        code, _, err = in_process(capsys, "--quiet", *argv)
        _one_line_error(code, err, f"{marker} was written by a newer qtransfer",
                        f"run directory format {RUN_DIR.current + 1}")
    compare_dir = new_run_dir(tmp_path / "runs", "compare")
    (compare_dir / RUN_MARKER).write_text(json.dumps({"format": RUN_DIR.current + 1}))
    (compare_dir / "compare_config.json").write_text("{}")
    code, _, err = in_process(capsys, "--quiet", "compare", "--resume", str(compare_dir))
    _one_line_error(code, err, "was written by a newer qtransfer")
    marker.write_text("{not json")
    code, _, err = in_process(capsys, "--quiet", "evaluate", str(run_copy))
    _one_line_error(code, err, f"{marker} is unreadable")


def test_a_holdout_list_of_a_newer_format_or_not_ours_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "holdout.json"
    base = ["train", "--data", str(tmp_path / "no-data-needed"), "--out", str(tmp_path / "runs"),
            "--holdout-list", str(listed)]
    cases = [
        (json.dumps({"format": HOLDOUT.current + 1, "files": []}), "was written by a newer qtransfer"),
        ("[1, 2]", 'has no "files" list'),
        (json.dumps({"files": "a.jpg"}), 'has no "files" list'),
        ("\x00\xff", "is not JSON"),
        (None, "does not exist"),
    ]
    for text, message in cases:
        listed.unlink(missing_ok=True)
        if text is not None:
            listed.write_text(text)
        code, _, err = in_process(capsys, "--quiet", *base)
        _one_line_error(code, err, str(listed), message)
    assert not (tmp_path / "runs").exists()


def test_a_holdout_list_from_before_versions_is_read(tmp_path: Path) -> None:
    from qtransfer.data.splits import read_holdout

    listed = tmp_path / "holdout.json"
    listed.write_text(json.dumps({"fraction": 0.2, "seed": 1, "files": ["ants/a.jpg"]}))
    assert read_holdout(listed)["files"] == ["ants/a.jpg"]
    assert HOLDOUT.check(read_holdout(listed), listed) == 1


def test_cache_shards_of_another_format_are_skipped_with_one_warning_and_kept(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "key")
    cache.add(["h1"], torch.ones(1, 3))
    cache.add(["h2"], torch.full((1, 3), 2.0))
    metas = sorted(cache.dir.glob("*.json"))
    for meta in metas:  # a newer qtransfer's shards, sharing this cache
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": CACHE_SHARD.current + 1}))
    fresh = FeatureCache(tmp_path, "key")
    with pytest.warns(UserWarning, match="another qtransfer's format") as caught:
        assert fresh.lookup() == {}
    assert len([w for w in caught if "format" in str(w.message)]) == 1
    assert sorted(cache.dir.glob("*.json")) == metas  # left for the qtransfer that wrote them
    fresh.add(["h1"], torch.zeros(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(fresh.lookup()) == ["h1"]
    assert torch.equal(fresh.mapped(["h1"]).tensor(), torch.zeros(1, 3))  # the recomputed row, not the newer one


def test_cache_shards_from_before_versions_are_served(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "key")
    cache.add(["h1"], torch.ones(1, 3))
    (meta,) = cache.dir.glob("*.json")
    entry = json.loads(meta.read_text())
    del entry["format"]
    meta.write_text(json.dumps(entry))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(FeatureCache(tmp_path, "key").mapped(["h1"]).tensor(), torch.ones(1, 3))


@pytest.mark.parametrize("kind", [CHECKPOINT, CACHE_SHARD, HOLDOUT, RUN_DIR])
def test_every_format_says_newer_older_and_damaged(kind, tmp_path: Path) -> None:
    path = tmp_path / "file"
    assert kind.check({}, path) == 1 and kind.check(kind.stamp({}), path) == kind.current
    with pytest.raises(InputError, match=rf"newer qtransfer \({kind.what} format {kind.current + 1};"):
        kind.check({"format": kind.current + 1}, path)
    with pytest.raises(InputError, match="older qtransfer"):
        kind.check({"format": kind.oldest - 1}, path)
    for bad in (True, 1.0, None, "1"):
        with pytest.raises(InputError, match="not a version number"):
            kind.check({"format": bad}, path)
