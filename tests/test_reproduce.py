"""The paper's experiments as commands: sections, figures, the generated report, and CIFAR's data checks."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from support.cifar import fake_cifar

from qtransfer.cli import main
from qtransfer.experiments.reproduce import ReproduceOptions, reproduce


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_spirals_writes_its_section_figures_and_report(tmp_path: Path) -> None:
    report = tmp_path / "docs" / "REPRODUCTION.md"
    options = ReproduceOptions(out=str(tmp_path / "runs"), seeds=[0], steps=60, command="qtransfer reproduce spirals")
    result = reproduce("spirals", options, report=report)
    for name in ("reproduction.md", "reproduction.json", "spirals_boundaries.png", "spirals_curves.png"):
        assert (result.run_dir / name).stat().st_size > 0, name
    runs = result.results["runs"]
    assert sorted((r["turns"], r["head"]) for r in runs) == [(1.52, "classical"), (1.52, "quantum"),
                                                            (2.0, "classical"), (2.0, "quantum")]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in runs)
    text = report.read_text()
    assert "0.970" in text and "0.855" in text  # the paper's figures beside ours
    assert (report.parent / "reproduction" / "spirals" / "spirals_boundaries.png").exists()
    assert "](reproduction/spirals/spirals_boundaries.png)" in text
    # a second run replaces its section; other sections stay
    report.write_text(text + "<!-- begin other -->\n## Other\nkept\n<!-- end other -->\n")
    reproduce("spirals", options, report=report)
    again = report.read_text()
    assert again.count("<!-- begin spirals -->") == 1 and "## Other\nkept" in again


def test_ants_bees_labels_its_backbones_and_says_which_weights_were_missing(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no ResNet18 weights here
    options = ReproduceOptions(data=str(hymenoptera), out=str(tmp_path), seeds=[42], epochs=1, augment_views=0,
                               cache_dir=str(shared_cache), num_workers=0)
    result = reproduce("ants-bees", options)
    assert result.results["missing_weights"] == ["resnet18"]
    text = (result.run_dir / "reproduction.md").read_text()
    assert "| efficientnet_lite0 | `quantum` | 1 |" in text and "| efficientnet_lite0 | `linear` | 1 |" in text
    assert "0.9673" in text and "ResNet18 is not in this table" in text
    assert "### Selected-on versus held-out accuracy" in text and "| `classical` |" in text.split("### Selected-on")[1]
    assert set(result.results["backbones"]["cross_validation"]["per_head"]) == {"quantum", "classical", "linear"}
    assert (result.run_dir / "ants_bees_efficientnet_lite0.png").exists()


def test_cifar_without_data_says_how_to_get_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match=re.escape("cifar-10-python.tar.gz")):
        reproduce("cifar", ReproduceOptions(out=str(tmp_path)))
    with pytest.raises(ValueError, match="no cifar-10-batches-py"):
        reproduce("cifar", ReproduceOptions(data=str(tmp_path), out=str(tmp_path)))
    capsys.readouterr()
    code = main(["reproduce", "cifar", "--out", str(tmp_path)])  # the CLI's entry point, in this process
    stderr = capsys.readouterr().err
    assert code != 0 and "Traceback" not in stderr
    assert "cifar-10-python.tar.gz" in stderr


@pytest.mark.slow
def test_cifar_pairs_run_on_a_cifar_shaped_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cifar(tmp_path / "cifar", per_class=2, monkeypatch=monkeypatch)
    options = ReproduceOptions(data=str(tmp_path / "cifar"), out=str(tmp_path / "runs"), seeds=[0], epochs=1,
                               backbones=["efficientnet_lite0"], cache_dir=str(tmp_path / "cache"), num_workers=0)
    result = reproduce("cifar", options)
    pairs = result.results["pairs"]
    assert set(pairs) == {"dogs-cats/efficientnet_lite0", "planes-cars/efficientnet_lite0"}
    assert pairs["dogs-cats/efficientnet_lite0"]["counts"] == {"train": 20, "val": 4}
    text = (result.run_dir / "reproduction.md").read_text()
    assert "0.8270" in text and "0.9605" in text and "| dogs-cats | efficientnet_lite0 | `quantum` |" in text


def _at_most(make, batches: int):
    """The same data generator, capped at `batches` batches."""
    return functools.wraps(make)(lambda n, *args, **kwargs: make(min(n, batches), *args, **kwargs))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_qc_and_qq_write_their_tables_beside_the_papers_figures(tmp_path: Path, mari2019: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import qtransfer.experiments.quantum_to_classical as q2c
    import qtransfer.experiments.quantum_to_quantum as q2q
    import qtransfer.models.quantum_backbones as qb

    # This checks the commands' plumbing (files, tables, the paper's figures beside ours), not what they learn
    # (test_schemes and test_quantum_backbones do that): the experiments' fixed data sizes and network A's
    # pretraining are shrunk here, and every step still runs.
    monkeypatch.setattr(q2c, "noisy_coherent_states", _at_most(q2c.noisy_coherent_states, 10))  # 1000 batches of 7
    import qtransfer.experiments.reproduce.qc as qc
    import qtransfer.experiments.reproduce.qq as qq

    monkeypatch.setattr(qc, "NOTEBOOK_TEST_BATCHES", 3)  # the q2c notebook's stream: 1000 test batches

    monkeypatch.setattr(qq, "gaussianity_batches", _at_most(q2q.gaussianity_batches, 3))  # 250 test batches
    monkeypatch.setattr(qq, "TEST_BATCHES", 2)  # the notebook's stream: 500 test batches
    monkeypatch.setattr(qq, "CUTOFFS", (15, 20))  # the cutoff study: 15, 20, 25, 35
    monkeypatch.setattr(qb, "pretrain_qubit_tetromino", functools.partial(qb.pretrain_qubit_tetromino, steps=10))
    report = tmp_path / "REPRODUCTION.md"
    for name, steps, figures in [("qc", 10, ("qc_features.png", "qc_loss.png", "qc_depth.png")),
                                 ("qq", 3, ("qq_loss.png", "qq_qubit_loss.png"))]:
        options = ReproduceOptions(data=str(mari2019), out=str(tmp_path / "runs"), seeds=[0], steps=steps,
                                   command=f"qtransfer reproduce {name}")
        result = reproduce(name, options, report=report)
        for figure in figures:
            assert (result.run_dir / figure).stat().st_size > 0, figure
        assert (result.run_dir / "qubit_tetromino.pt").exists()
    text = report.read_text()
    assert "| CV, cut after 15 of 25 layers, amplitude features (the paper's) |" in text and "0.8067" in text
    assert "| the notebook's stream RandomState(100), network B from seeds 0–0 |" in text
    assert "| A (as the notebook) + B, lr 0.01 (the notebook's settings) |" in text and "0.8755" in text
    assert "| truncated, cutoff 20 |" in text and "| exact, cutoff 15 |" in text and "0.8708" in text
    assert "qubit A (5 of 8 layers, frozen) + 2 trainable layers" in text
    assert (tmp_path / "reproduction" / "qc" / "qc_features.png").exists()
