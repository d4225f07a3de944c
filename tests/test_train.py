"""End to end on the real ants/bees images with the pretrained EfficientNet-Lite0 backbone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.cli import in_process
from support.real_images import real_subset
from support.runs import metric_rows

from qtransfer.config import TrainConfig
from qtransfer.training.run import train
from qtransfer.training.trained import TrainedModel

RUN_FILES = ["config.json", "metrics.jsonl", "summary.json", "best.pt", "last.pt",
             "curves.png", "predictions.png", "confusion.png"]
METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


@pytest.fixture(scope="module")
def cache_dir(shared_cache: Path) -> Path:
    """The session's feature cache: the real images' features are extracted once for the whole suite."""
    return shared_cache


def _config(data: Path, cache_dir: Path, out: Path, **changes) -> TrainConfig:
    values = {"data": str(data), "backbone": "efficientnet_lite0", "epochs": 2, "cache_dir": str(cache_dir),
              "out": str(out), "num_workers": 0}
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def two_epoch_run(finished_run) -> tuple[Path, dict]:
    """The session's finished 2-epoch run on the real data (conftest.finished_run)."""
    return finished_run


def test_two_epochs_write_every_file_with_sane_values(two_epoch_run) -> None:
    run_dir, summary = two_epoch_run
    for name in RUN_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    rows = metric_rows(run_dir, METRICS)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert summary["counts"] == {"train": {"ants": 123, "bees": 121}, "val": {"ants": 70, "bees": 83}}
    # the session cache holds every image (counts on a cold cache: test_reliability, test_distributed)
    assert summary["features_computed"] == {"train": 0, "val": 0}
    # pretrained features separate ants from bees even after two short epochs
    assert summary["best_val_acc"] > 0.7
    assert summary["best_val_acc"] == max(r["val_acc"] for r in rows)
    assert sum(map(sum, summary["confusion"])) == 153
    for name in ["curves.png", "predictions.png", "confusion.png"]:
        assert Image.open(run_dir / name).size[0] > 400


def test_second_run_hits_the_cache_and_gives_identical_features(two_epoch_run, hymenoptera, cache_dir,
                                                                tmp_path) -> None:
    run_dir, _ = two_epoch_run
    again_dir, summary = train(_config(hymenoptera, cache_dir, tmp_path, step_size=2))
    assert summary["features_computed"] == {"train": 0, "val": 0}
    assert metric_rows(again_dir, METRICS) == metric_rows(run_dir, METRICS)  # same features and seed: same run


def test_resume_ends_with_the_metrics_of_an_uninterrupted_run(two_epoch_run, hymenoptera, cache_dir, tmp_path) -> None:
    full_dir, _ = train(_config(hymenoptera, cache_dir, tmp_path / "full", epochs=4, step_size=2))
    cut_dir = tmp_path / "cut"  # a copy of the finished 2-epoch run (the same settings, step_size 2)
    shutil.copytree(two_epoch_run[0], cut_dir)
    config = json.loads((cut_dir / "config.json").read_text())
    config["epochs"] = 4  # as if the 4-epoch run had been stopped after epoch 2
    (cut_dir / "config.json").write_text(json.dumps(config))
    train(TrainConfig(), resume=cut_dir)
    assert metric_rows(cut_dir, METRICS) == metric_rows(full_dir, METRICS)
    full = torch.load(full_dir / "best.pt", weights_only=True)
    resumed = torch.load(cut_dir / "best.pt", weights_only=True)
    for key, value in full["head"].items():
        assert torch.equal(value, resumed["head"][key]), key


def test_evaluate_and_predict_on_real_images(two_epoch_run, hymenoptera) -> None:
    run_dir, summary = two_epoch_run
    model = TrainedModel.load(run_dir)
    result = model.evaluate()
    assert result["images"] == 153
    assert result["accuracy"] == pytest.approx(summary["best_val_acc"], abs=1e-6)
    ants = sorted((hymenoptera / "val" / "ants").glob("*.jpg"))[:2]
    preds = model.predict(ants)
    assert [p["image"] for p in preds] == [str(a) for a in ants]
    for p in preds:
        assert p["class"] in ("ants", "bees") and 0.5 <= p["probability"] <= 1
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_cli_train_evaluate_predict_info(hymenoptera, cache_dir, tmp_path, capsys, monkeypatch) -> None:
    # through the CLI's entry point in this process: `python -m qtransfer train` runs as a real process in
    # test_reliability (interrupted by signals, and its exit codes)
    code, out, err = in_process(capsys, "train", "--data", str(hymenoptera), "--backbone", "efficientnet_lite0",
                                "--epochs", "1", "--cache-dir", str(cache_dir), "--out", str(tmp_path), "--name", "cli",
                                "--workers", "0")
    assert code == 0, err
    assert "best epoch 1" in out
    (run_dir,) = tmp_path.glob("*-cli")
    code, out, err = in_process(capsys, "evaluate", str(run_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["images"] == 153
    bee = next((hymenoptera / "val" / "bees").glob("*.jpg"))
    code, out, err = in_process(capsys, "predict", str(run_dir), str(bee), "--json")
    assert code == 0, err
    assert json.loads(out)[0]["class"] in ("ants", "bees")
    monkeypatch.setenv("QTRANSFER_CACHE", str(cache_dir))
    code, out, err = in_process(capsys, "info")
    assert code == 0 and json.loads(out)["cache"]["bytes"] > 0


def test_cli_errors_are_one_clear_line(tmp_path, capsys) -> None:
    # exit codes of a real process are checked in test_reliability.test_exit_codes_user_error_usage_error_and_debug
    code, _, err = in_process(capsys, "train", "--data", str(tmp_path / "nowhere"), "--backbone", "efficientnet_lite0",
                         "--out", str(tmp_path / "runs"))
    assert code == 1
    assert "Traceback" not in err and "nowhere" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing is made before the inputs are checked
    code, _, err = in_process(capsys, "train", "--data", str(tmp_path), "--lr", "0", "--out", str(tmp_path / "runs"))
    assert code == 1 and "learning rate must be > 0" in err


@pytest.fixture(scope="module")
def small_data(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four images per class and split of the real dataset."""
    return real_subset(hymenoptera, tmp_path_factory.mktemp("small"), {"train": 4, "val": 4})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_seed_parity_runs_the_backbone_in_train_mode_every_step(small_data, tmp_path) -> None:
    from qtransfer.models.backbones import create_backbone

    run_dir, summary = train(_config(small_data, tmp_path / "cache", tmp_path, epochs=1, seed_parity=True))
    assert summary["features_computed"] == {}  # no cache in this mode
    assert not (tmp_path / "cache").exists()
    best = torch.load(run_dir / "best.pt", weights_only=True)
    fresh = dict(create_backbone("efficientnet_lite0").named_buffers())
    drifted = [k for k, v in best["backbone_buffers"].items() if v.is_floating_point() and not torch.equal(v, fresh[k])]
    assert drifted  # BatchNorm running statistics moved, as in the tutorial
    model = TrainedModel.load(run_dir)
    assert model.evaluate()["accuracy"] == pytest.approx(summary["best_val_acc"], abs=1e-6)
