"""Resuming runs: from a kill before the first epoch, with the settings that may change (--epochs to extend,
--device, --workers, --cache-dir, tracking), and refusing any other flag that differs from the saved settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import in_process
from support.real_images import real_subset
from support.runs import metric_rows

import qtransfer.training.run as run_module
from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.errors import InputError

pytestmark = pytest.mark.slow  # each test trains and resumes runs through the CLI

METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
FLAGS = ["--backbone", "pixels", "--weights", "none", "--qubits", "2", "--depth", "1", "--batch-size", "4",
         "--lr", "0.01", "--step-size", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def data(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real training and four real validation images per class."""
    return real_subset(hymenoptera, tmp_path_factory.mktemp("resume-data"), {"train": 6, "val": 4})


def train_cli(capsys, data: Path, tmp_path: Path, name: str, *extra: str) -> Path:
    code, _, err = in_process(capsys, "--quiet", "train", "--data", str(data), *FLAGS, "--cache-dir",
                              str(tmp_path / "cache"), "--out", str(tmp_path / "runs"), "--name", name, *extra)
    assert code == 0, err
    return next((tmp_path / "runs").glob(f"*-{name}"))


def test_a_run_killed_before_its_first_epoch_resumes_from_epoch_one_and_equals_a_straight_run(
    data, tmp_path, capsys, pixels_backbone, monkeypatch
) -> None:
    straight = train_cli(capsys, data, tmp_path, "straight", "--epochs", "3")

    def killed(self: run_module.Run) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C (or a SIGKILL) during feature extraction leaves it

    with monkeypatch.context() as m:
        m.setattr(run_module.Run, "prepare", killed)
        code, _, err = in_process(capsys, "--quiet", "train", "--data", str(data), *FLAGS, "--epochs", "3",
                                  "--cache-dir", str(tmp_path / "cold"), "--out", str(tmp_path / "runs"),
                                  "--name", "cut")
    assert code == 130 and "no epoch finished" in err and "qtransfer train --resume" in err, err
    cut = next((tmp_path / "runs").glob("*-cut"))
    assert not (cut / "last.pt").exists() and (cut / "config.json").exists()

    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(cut))
    assert code == 0, err
    assert metric_rows(cut, METRICS) == metric_rows(straight, METRICS) and len(metric_rows(cut, METRICS)) == 3
    assert json.loads((cut / "summary.json").read_text())["features_computed"]["train"] == 12  # a cold cache


def test_epochs_extend_a_finished_run_to_equal_a_longer_straight_run(
    data, tmp_path, capsys, pixels_backbone
) -> None:
    straight = train_cli(capsys, data, tmp_path, "straight", "--epochs", "4")
    short = train_cli(capsys, data, tmp_path, "short", "--epochs", "2")
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(short), "--epochs", "4")
    assert code == 0, err
    assert metric_rows(short, METRICS) == metric_rows(straight, METRICS)
    assert json.loads((short / "config.json").read_text())["epochs"] == 4
    assert json.loads((short / "summary.json").read_text())["epochs"] == 4
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(short), "--epochs", "3")
    assert code == 1 and "--epochs 3 is fewer than the 4 epochs the resumed run has finished" in err, err


def test_device_workers_cache_and_tracking_apply_on_resume(data, tmp_path, capsys, pixels_backbone) -> None:
    run_dir = train_cli(capsys, data, tmp_path, "moved", "--epochs", "1")
    saved = json.loads((run_dir / "config.json").read_text())
    saved.update(device="cuda:7", num_workers=3)  # saved on a GPU machine with other cores
    (run_dir / "config.json").write_text(json.dumps(saved))
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), "--epochs", "2")
    assert code == 1 and "'cuda:7'" in err and "--device cpu" in err, err  # the saved device is used unless changed
    new_cache = tmp_path / "other-cache"
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), "--epochs", "2", "--device", "cpu",
                              "--workers", "0", "--cache-dir", str(new_cache), "--tensorboard")
    assert code == 0, err
    resumed = json.loads((run_dir / "config.json").read_text())
    assert (resumed["device"], resumed["num_workers"], resumed["cache_dir"], resumed["tensorboard"]) == (
        "cpu", 0, str(new_cache), True)
    assert list(new_cache.rglob("*.json")), "the features were cached in the new --cache-dir"
    assert list(run_dir.rglob("events.out.tfevents.*"))
    assert len(metric_rows(run_dir, METRICS)) == 2


REFUSED = [
    (["--qubits", "3"], "--qubits 3 differs from the resumed run's 2"),
    (["--lr", "0.5"], "--lr 0.5 differs from the resumed run's 0.01"),
    (["--head", "classical"], "--head \"classical\" differs from the resumed run's \"quantum\""),
    (["--seed-parity"], "--seed-parity true differs from the resumed run's false"),
]


def test_any_other_flag_that_differs_is_refused_in_one_line_naming_it(data, tmp_path, capsys, pixels_backbone) -> None:
    run_dir = train_cli(capsys, data, tmp_path, "fixed", "--epochs", "1")
    before = (run_dir / "metrics.jsonl").read_text()
    for flags, named in REFUSED:
        code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), *flags)
        assert code == 1, err
        assert err.count("\n") == 1 and named in err and "start a new run without --resume" in err, err
        assert "--epochs, --device, --workers, --cache-dir, --no-cache, --threads, --tensorboard, --mlflow" in err
    assert (run_dir / "metrics.jsonl").read_text() == before
    # flags equal to the saved settings are accepted
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), "--qubits", "2",
                              "--data", str(data))
    assert code == 0, err


def test_a_config_file_given_on_resume_is_held_to_the_same_rule(data, tmp_path, capsys, pixels_backbone) -> None:
    run_dir = train_cli(capsys, data, tmp_path, "filed", "--epochs", "1")
    settings = tmp_path / "more.toml"
    settings.write_text("epochs = 2\nn_qubits = 5\n")
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), "--config", str(settings))
    assert code == 1 and "--qubits 5 differs" in err and str(settings) in err, err
    settings.write_text("epochs = 2\nn_qubits = 2\n")
    code, _, err = in_process(capsys, "--quiet", "train", "--resume", str(run_dir), "--config", str(settings))
    assert code == 0 and len(metric_rows(run_dir, METRICS)) == 2, err


def test_resume_changes_apply_only_what_may_change() -> None:
    saved = TrainConfig(data="d", epochs=5, device="cuda", n_qubits=4)
    resumed = ResumeChanges({"epochs": 9, "device": "cpu", "n_qubits": 4, "data": "d"}).apply(saved)
    assert (resumed.epochs, resumed.device, resumed.n_qubits) == (9, "cpu", 4)
    assert saved.epochs == 5  # the saved settings are not changed in place
    with pytest.raises(InputError, match=r"^depth 2 differs .* except epochs, device, num_workers"):
        ResumeChanges({"depth": 2}).apply(saved)
    with pytest.raises(InputError, match="epochs must be >= 1"):
        ResumeChanges({"epochs": 0}).apply(saved)


def test_compare_and_sweep_resume_extend_epochs_and_refuse_other_changes(
    data, tmp_path, capsys, pixels_backbone
) -> None:
    common = ["--data", str(data), *FLAGS, "--cache-dir", str(tmp_path / "cache"), "--seed-list", "1", "2"]
    code, _, err = in_process(capsys, "--quiet", "compare", *common, "--heads", "quantum", "linear", "--epochs", "3",
                    "--out", str(tmp_path / "straight"))
    assert code == 0, err
    code, _, err = in_process(capsys, "--quiet", "compare", *common, "--heads", "quantum", "linear", "--epochs", "2",
                    "--out", str(tmp_path / "short"))
    assert code == 0, err
    straight, short = next((tmp_path / "straight").iterdir()), next((tmp_path / "short").iterdir())
    code, _, err = in_process(capsys, "--quiet", "compare", "--resume", str(short), "--heads", "quantum", "classical")
    assert code == 1 and "--heads [\"quantum\", \"classical\"] differs from the resumed run's" in err, err
    code, _, err = in_process(capsys, "--quiet", "compare", "--resume", str(short), "--seeds", "3")
    assert code == 1 and "--seeds [42, 43, 44] differs from the resumed run's [1, 2]" in err, err
    code, _, err = in_process(capsys, "--quiet", "compare", "--resume", str(short), "--epochs", "3")
    assert code == 0, err

    def curves(run_dir: Path) -> dict:
        runs = map(json.loads, (run_dir / "runs.jsonl").read_text().splitlines())
        return {(r["label"], r["seed"]): r["curves"] for r in runs}

    assert curves(short) == curves(straight) and len(curves(short)[("quantum", 1)]["val_acc"]) == 3
    assert json.loads((short / "compare_config.json").read_text())["epochs"] == 3

    code, _, err = in_process(capsys, "--quiet", "sweep", *common, "--depths", "0", "--qubit-counts", "2",
                              "--epochs", "1", "--out", str(tmp_path / "sweep"))
    assert code == 0, err
    swept = next((tmp_path / "sweep").iterdir())
    for flags, named in ((["--depths", "0", "1"], "--depths [0, 1] differs"),
                         (["--no-classical"], "--no-classical true differs from the resumed run's false")):
        code, _, err = in_process(capsys, "--quiet", "sweep", "--resume", str(swept), *flags)
        assert code == 1 and named in err, err
    code, _, err = in_process(capsys, "--quiet", "sweep", "--resume", str(swept), "--epochs", "2")
    assert code == 0, err
    runs = [json.loads(line) for line in (swept / "runs.jsonl").read_text().splitlines()]
    assert {len(r["curves"]["val_acc"]) for r in runs} == {2}
    assert json.loads((swept / "sweep_config.json").read_text())["epochs"] == 2
