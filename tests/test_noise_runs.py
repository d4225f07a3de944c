"""A trained head under shots and noise, end to end on real images: evaluate, noise-scan, training with shots."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from support.real_images import real_subset

from qtransfer.cli import main
from qtransfer.config import TrainConfig
from qtransfer.experiments.noise_scan import ScanSettings, noise_scan
from qtransfer.training.run import train
from qtransfer.training.trained import TrainedModel


@pytest.fixture(scope="module")
def trained(finished_run: tuple[Path, dict]) -> Path:
    """The session's finished run on the real data (conftest.finished_run): a trained quantum head."""
    return finished_run[0]


@pytest.fixture
def evaluate(capsys: pytest.CaptureFixture):
    """`qtransfer evaluate ARGS --json` through the CLI's entry point, in this process (no torch import per call)."""

    def run(*args: str) -> dict:
        capsys.readouterr()
        code = main(["--quiet", "evaluate", *args, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    return run


@pytest.fixture(scope="module")
def few_val_images(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the run's classes: 20 real val images per class (and 2 train images, for the layout)."""
    return real_subset(hymenoptera, tmp_path_factory.mktemp("few"), {"train": 2, "val": 20})


def test_a_trained_head_runs_on_qiskit_aer_with_a_fake_ibm_backend_noise_model(trained: Path, few_val_images: Path,
                                                                                evaluate) -> None:
    pytest.importorskip("qiskit_aer")
    # Aer simulates every image's circuit with the device's noise (~0.14 s each): 40 real images, not all 153
    exact = evaluate(str(trained), "--data", str(few_val_images))
    noisy = evaluate(str(trained), "--data", str(few_val_images), "--backend", "pennylane:qiskit.aer",
                     "--shots", "1024", "--device-options", '{"noise_model": "FakeManilaV2"}')
    assert exact["images"] == 40 and noisy["images"] == 40 and noisy["data"] == str(few_val_images)
    assert noisy["backend"] == "pennylane:qiskit.aer" and noisy["shots"] == 1024
    assert 0.5 < noisy["accuracy"] <= 1.0 and abs(noisy["accuracy"] - exact["accuracy"]) < 0.15
    assert noisy["loss"] != exact["loss"]


def test_any_pennylane_device_scores_like_the_engine(trained: Path, evaluate) -> None:
    exact = evaluate(str(trained))
    for device in ("pennylane:default.qubit", "pennylane:lightning.qubit"):
        other = evaluate(str(trained), "--backend", device, "--device-options", "{}")
        assert other["accuracy"] == exact["accuracy"]
        assert other["loss"] == pytest.approx(exact["loss"], rel=1e-5)


def test_evaluate_with_shots_and_noise_in_the_engine(trained: Path, evaluate) -> None:
    shots = evaluate(str(trained), "--shots", "256", "--repeats", "3")
    assert shots["accuracy_repeats"]["n"] == 3 and 0.5 < shots["accuracy_repeats"]["mean"] <= 1
    noisy = evaluate(str(trained), "--noise", "amplitude_damping=0.05,readout=0.02")
    assert noisy["noise"] == "amplitude_damping=0.05,readout=0.02" and 0 <= noisy["accuracy"] <= 1
    model = TrainedModel.load(trained)
    split = model.features()
    a, b = (model.simulated(shots=64, seed=s).score(split)["loss"] for s in (1, 2))
    assert a != b  # each repetition draws its own shots


def test_noise_scan_writes_json_and_plot(trained: Path) -> None:
    result = noise_scan(trained, ScanSettings(strengths=[0.0, 0.01, 0.5], shots=[32, 512], repeats=2))
    assert (trained / "noise_scan.json").exists() and Image.open(trained / "noise_scan.png").size[0] > 800
    accuracies = [r["accuracy"] for r in result["noise"]]
    assert accuracies[0] == result["exact_accuracy"] and all(0 <= a <= 1 for a in accuracies)
    assert accuracies[2] < result["exact_accuracy"]  # p = 0.5 depolarizing after every gate destroys the signal
    assert [r["shots"] for r in result["shots"]] == [32, 512]
    assert all(len(r["accuracies"]) == 2 for r in result["shots"])
    other = trained.parent / "linear"
    other.mkdir()
    config = json.loads((trained / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "head": "linear"}))
    with pytest.raises(ValueError, match="a noise scan needs a quantum head"):
        noise_scan(other, ScanSettings())


def test_training_with_shots_takes_parameter_shift_gradients(hymenoptera: Path, shared_cache: Path,
                                                             tmp_path: Path) -> None:
    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, cache_dir=str(shared_cache),
                         out=str(tmp_path), num_workers=0, shots=128, seed=3)
    run_dir, summary = train(config)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_val_acc"] > 0.7 and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert json.loads((run_dir / "config.json").read_text())["shots"] == 128
