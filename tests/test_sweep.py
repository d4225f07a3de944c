"""Depth and qubit sweeps on the real ants/bees features."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from qtransfer.config import TrainConfig
from qtransfer.experiments.sweep import SweepSettings, sweep


def test_points_on_both_axes_are_run_once() -> None:
    settings = SweepSettings(TrainConfig(n_qubits=4, depth=6), depths=[0, 6], qubits=[2, 4], seeds=[1])
    assert settings.heads() == ["quantum:qubits=4,depth=0", "quantum:qubits=4,depth=6", "quantum:qubits=2,depth=6",
                                "classical:qubits=2", "classical:qubits=4"]


def test_sweep_writes_one_row_per_point_and_seed(hymenoptera: Path, shared_cache: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, cache_dir=str(shared_cache),
                         out=str(tmp_path), num_workers=0)
    run_dir, result = sweep(SweepSettings(config, depths=[0, 2], qubits=[2, 3], seeds=[42, 43]))
    for name in ("sweep.json", "sweep.md", "sweep.png", "runs.jsonl", "sweep_config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert Image.open(run_dir / "sweep.png").size[0] > 800
    labels = {"quantum:qubits=4,depth=0", "quantum:qubits=4,depth=2", "quantum:qubits=2,depth=6",
              "quantum:qubits=3,depth=6", "classical:qubits=2", "classical:qubits=3", "classical:qubits=4"}
    assert sorted((r["label"], r["seed"]) for r in result["runs"]) == sorted((h, s) for h in labels for s in (42, 43))
    depth = result["axes"]["depth"]["quantum"]
    assert [p["x"] for p in depth] == [0, 2]
    assert [p["x"] for p in result["axes"]["qubits"]["classical"]] == [2, 3]
    for p in depth + result["axes"]["qubits"]["quantum"]:
        assert 0.0 <= p["best_val_acc"]["min"] <= p["best_val_acc"]["max"] <= 1.0
        assert p["best_val_acc"]["n"] == 2
    # depth 0 has no circuit weights: 1280*4+4 (pre) + 4*2+2 (post)
    assert depth[0]["parameters"] == 1280 * 4 + 4 + 4 * 2 + 2
    assert depth[1]["parameters"] == depth[0]["parameters"] + 2 * 4
    text = (run_dir / "sweep.md").read_text()
    assert "| 0 |" in text and "| 3 |" in text
    # a resumed sweep reads its settings and finished runs back
    _, again = sweep(SweepSettings(TrainConfig()), resume=run_dir)
    assert again["runs"] == result["runs"]


def test_bad_sweep_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="depths must be"):
        sweep(SweepSettings(TrainConfig(data=str(tmp_path)), depths=[-1]))
    with pytest.raises(ValueError, match="qubits must be"):
        sweep(SweepSettings(TrainConfig(data=str(tmp_path)), qubits=[]))
