"""Quantum networks A: the paper's pretrained CV weights (files, download, conventions), the qubit network."""
from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qtransfer.errors import WeightsError, WeightsUnavailable
from qtransfer.models.quantum_backbones import (
    QUANTUM_BACKBONES,
    QubitCircuitFile,
    QubitNetwork,
    TetrominoNetwork,
    create_quantum_backbone,
    mari2019_weights,
    pretrain_qubit_tetromino,
    tetromino_images,
    tetromino_inputs,
)


def top_cells(images: torch.Tensor) -> list[set[int]]:
    """The 4 brightest of the 16 pixels of each image: a tetromino's cells."""
    return [set(row.topk(4).indices.tolist()) for row in images]


def test_all_25_pretrained_layers_write_the_seven_tetrominoes(mari2019: Path) -> None:
    network = create_quantum_backbone("cv-tetromino", depth=25, weights=mari2019, features="probability")
    features = network(tetromino_inputs())
    assert features.shape == (7, 16)
    assert top_cells(features) == top_cells(tetromino_images())
    assert network.state(tetromino_inputs()).norm().min() > 0.998  # cutoff 11 holds the states


def test_the_cut_network_keeps_only_its_first_layers_and_is_frozen(mari2019: Path) -> None:
    network = create_quantum_backbone("cv-tetromino", weights=mari2019)
    assert network.depth == 15 and network.params.shape == (16, 15)
    assert not any(p.requires_grad for p in network.parameters())
    amplitude = network(tetromino_inputs())
    torch.testing.assert_close(amplitude.double().square().sum(1), torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match=re.escape("depth must be in 0..25")):
        create_quantum_backbone("cv-tetromino", depth=26, weights=mari2019)
    with pytest.raises(ValueError, match="cutoff 3 is below"):
        TetrominoNetwork(np.zeros((16, 25)), cutoff=3)


def test_the_pretrained_files_are_checked_by_hash(mari2019: Path, tmp_path: Path) -> None:
    assert mari2019_weights("circuit_A.npy", mari2019).shape == (6, 1)
    fake = tmp_path / "trained_params.npy"
    np.save(fake, np.zeros((16, 25), dtype=np.float32))
    with pytest.raises(WeightsError, match="expected f529b6eb"):
        mari2019_weights("trained_params.npy", fake)
    with pytest.raises(FileNotFoundError, match="pass the folder holding"):
        mari2019_weights("trained_params.npy", tmp_path / "nowhere.npy")
    with pytest.raises(ValueError, match="unknown pretrained file"):
        mari2019_weights("trained_param.npy", mari2019)


def test_the_weights_are_downloaded_once_verified_and_cached(mari2019: Path, tmp_path: Path, http_server,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    shutil.copytree(mari2019, served)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("QTRANSFER_MARI2019_URL", http_server(served) + "/{}")
    first = mari2019_weights("trained_params.npy", progress=False)
    (served / "trained_params.npy").unlink()  # the second call must not need the server
    np.testing.assert_array_equal(mari2019_weights("trained_params.npy", progress=False), first)
    np.save(served / "circuit_A.npy", np.ones((6, 1), dtype=np.float32))  # a wrong file on the server
    with pytest.raises(WeightsError, match="is corrupt or not the published file"):
        mari2019_weights("circuit_A.npy", progress=False)
    assert not list((tmp_path / "torch").rglob("*circuit_A*"))  # nothing half-written left behind


def test_no_network_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("QTRANSFER_MARI2019_URL", "http://127.0.0.1:9/{}")
    with pytest.raises(WeightsUnavailable, match="pass --data FOLDER"):
        mari2019_weights("circuit_A.npy", progress=False)


@pytest.mark.slow
def test_the_qubit_network_is_pretrained_saved_loaded_and_cut(tmp_path: Path) -> None:
    pretrained = pretrain_qubit_tetromino(seed=0)
    assert pretrained.loss < 0.1  # the tetrominoes are written into the Born probabilities
    path = tmp_path / "qubit.pt"
    pretrained.save(path)
    loaded = QubitCircuitFile.load(path)
    torch.testing.assert_close(loaded.weights, pretrained.weights)
    full = create_quantum_backbone("qubit-tetromino", depth=8, weights=path, features="probability")
    hits = [len(a & b) for a, b in zip(top_cells(full(tetromino_inputs())), top_cells(tetromino_images()))]
    assert min(hits) >= 3 and sum(hits) >= 25
    cut = QubitNetwork(loaded, 2)
    assert cut.weights.numel() == 2 * 4 * 3 and cut(tetromino_inputs()).shape == (7, 16)
    torch.save({"template": "x"}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a pretrained qubit circuit"):
        QubitCircuitFile.load(tmp_path / "foreign.pt")


def test_a_hostile_qubit_circuit_file_never_runs(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps({"template": Payload()}))
    with pytest.raises(ValueError, match="not a pretrained qubit circuit"):
        QubitCircuitFile.load(hostile)
    assert not (tmp_path / "pwned").exists()


def test_unknown_quantum_backbones_get_the_closest_name() -> None:
    assert set(QUANTUM_BACKBONES) == {"cv-tetromino", "cv-gaussianity", "qubit-tetromino"}
    with pytest.raises(ValueError, match="cv-tetromino"):
        create_quantum_backbone("cv-tetromnio")


def test_a_quantum_network_a_given_as_an_image_backbone_says_where_it_belongs() -> None:
    from qtransfer.models.backbones import get_spec

    with pytest.raises(ValueError, match="qtransfer reproduce qc"):
        get_spec("cv-tetromino")
