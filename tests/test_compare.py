"""Heads compared over seeds on the real ants/bees features: files, statistics, parity with `train`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from scipy import stats
from support.real_images import real_subset

from qtransfer.config import TrainConfig
from qtransfer.experiments.compare import (
    CompareSettings,
    compare,
    parse_head,
    summarize,
)
from qtransfer.experiments.stats import bootstrap_mean_ci, describe, paired_difference
from qtransfer.training.run import train


def _config(data: Path, cache: Path, out: Path, **changes) -> TrainConfig:
    values = {"data": str(data), "backbone": "efficientnet_lite0", "epochs": 2, "cache_dir": str(cache),
              "out": str(out), "num_workers": 0}
    return TrainConfig(**{**values, **changes})


TRAIN_PER_CLASS = 16


@pytest.fixture(scope="module")
def data(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real val split (153 images) and the first 16 real train images of each class: compare's augmented
    views are computed for every train image, and their count proves nothing here."""
    return real_subset(hymenoptera, tmp_path_factory.mktemp("compare-data"), {"train": TRAIN_PER_CLASS, "val": None})


@pytest.fixture(scope="module")
def comparison(data: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("compare")
    settings = CompareSettings(_config(data, shared_cache, out), ["quantum", "classical", "linear",
                               "quantum:depth=0"], [42, 43], augment_views=1)
    return compare(settings)


def test_compare_writes_its_files_with_one_row_per_head_and_seed(comparison) -> None:
    run_dir, result = comparison
    for name in ("compare.json", "compare.md", "compare.png", "runs.jsonl", "compare_config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert Image.open(run_dir / "compare.png").size[0] > 800
    runs = result["runs"]
    keys = sorted((r["label"], r["augmented"], r["seed"]) for r in runs)
    labels = ["classical", "linear", "quantum", "quantum:depth=0"]
    assert keys == sorted((h, a, s) for h in labels for a in (False, True) for s in (42, 43))
    for r in runs:
        for metric in ("best_val_acc", "final_val_acc"):
            assert 0.0 <= r[metric] <= 1.0
        assert r["best_val_acc"] >= r["final_val_acc"]
        assert len(r["curves"]["val_acc"]) == 2
        # one validation image is 1/153 of accuracy
        assert round(r["best_val_acc"] * 153) == pytest.approx(r["best_val_acc"] * 153, abs=1e-9)
    assert result["heads"]["quantum"]["parameters"]["mean"] == 1280 * 4 + 4 + 24 + 4 * 2 + 2
    assert result["heads"]["linear"]["parameters"]["mean"] == 1280 * 2 + 2
    assert result["heads"]["quantum:depth=0"]["parameters"]["mean"] == 1280 * 4 + 4 + 4 * 2 + 2
    assert set(result["heads"]) == set(labels) | {f"{h}+aug1" for h in labels}
    pairs = {(p["a"], p["b"], p["metric"]) for p in result["paired"]}
    assert ("quantum", "classical", "best_val_acc") in pairs
    assert ("quantum+aug1", "quantum", "final_val_acc") in pairs
    assert ("classical", "quantum", "best_val_acc") not in pairs
    text = (run_dir / "compare.md").read_text()
    assert "selected on val" in text and "`quantum` − `classical`" in text
    q = next(p for p in result["paired"] if (p["a"], p["b"], p["metric"]) == ("quantum", "classical", "best_val_acc"))
    assert f"| `quantum` − `classical` | best_val_acc | 2 | {q['mean']:+.4f} | [" in text
    assert "| 95% t-interval | sign-flip p | d_z |" in text and "bootstrap interval |" not in text
    assert q["p_method"] == "exact" and q["p_sign_flip"] in (0.5, 1.0)  # two seeds: 4 sign flips, p is never below 1/2
    assert json.loads((run_dir / "compare.json").read_text())["seeds"] == [42, 43]


def test_a_compare_run_equals_a_train_run_with_the_same_settings(comparison, data, shared_cache, tmp_path):
    _, result = comparison
    run_dir, summary = train(_config(data, shared_cache, tmp_path, seed=43))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ours = next(r for r in result["runs"] if r["label"] == "quantum" and r["seed"] == 43 and not r["augmented"])
    assert ours["curves"]["val_acc"] == [r["val_acc"] for r in rows]
    assert ours["curves"]["train_loss"] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
    assert ours["best_val_acc"] == summary["best_val_acc"]


def test_a_rerun_in_the_same_directory_resumes_without_training_again(comparison, monkeypatch) -> None:
    run_dir, result = comparison
    import qtransfer.experiments.runner as runner

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "fit_group", fail)
    settings = CompareSettings.load(run_dir / "compare_config.json")
    _, again = compare(settings, resume=run_dir)
    assert again["runs"] == result["runs"]


def test_augmented_views_are_cached_seeded_and_distinct(comparison, data: Path, hymenoptera: Path,
                                                         shared_cache: Path) -> None:
    from qtransfer.data.images import ImageFolderDataset
    from qtransfer.features.augment import AugmentedView, augment_transform
    from qtransfer.features.pipeline import load_features
    from qtransfer.models.backbones import create_backbone

    features = load_features(_config(data, shared_cache, Path("unused")), augment_views=1)
    views = features.views
    assert views is not None and views.shape == (2 * TRAIN_PER_CLASS, 2, 1280)
    assert (views[:, 0] - views[:, 1]).abs().mean() > 0.05  # the view is not the un-augmented image
    backbone = create_backbone("efficientnet_lite0")
    ds = ImageFolderDataset(hymenoptera / "train", check=False)
    hashes = [f"h{i}" for i in range(len(ds))]
    first = AugmentedView(ds, hashes, augment_transform(backbone), view=0, seed=1)
    again = AugmentedView(ds, hashes, augment_transform(backbone), view=0, seed=1)
    other = AugmentedView(ds, hashes, augment_transform(backbone), view=1, seed=1)
    for i in (0, 100, 200):
        torch.manual_seed(i)  # the global RNG state must not matter
        assert torch.equal(first[i][0], again[i][0])
        assert not torch.equal(first[i][0], other[i][0])


@pytest.mark.parametrize(
    "text, head, settings",
    [("quantum", "quantum", {}), ("quantum:depth=2", "quantum", {"depth": 2}),
     ("quantum:qubits=6, template=ring_cz", "quantum", {"n_qubits": 6, "template": "ring_cz"}),
     ("classical:qubits=8", "classical", {"n_qubits": 8}), ("linear:lr=0.01", "linear", {"lr": 0.01})],
)
def test_head_specs_parse(text: str, head: str, settings: dict) -> None:
    spec = parse_head(text)
    assert spec.head == head and dict(spec.settings) == settings


@pytest.mark.parametrize(
    "text, message",
    [("quantun", "Did you mean 'quantum'"), ("quantum:dept=2", "key one of"),
     ("quantum:depth=two", "needs a value of type int"), ("quantum:depth", "key=value")],
)
def test_bad_head_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_head(text)


def test_bad_settings_are_refused_before_any_work(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="depth must be >= 0"):
        compare(CompareSettings(config, ["quantum:depth=-1"], [1]))
    with pytest.raises(ValueError, match="given twice"):
        compare(CompareSettings(config, ["linear", "linear"], [1]))
    with pytest.raises(ValueError, match="no seeds"):
        compare(CompareSettings(config, ["linear"], []))
    assert list(tmp_path.iterdir()) == []


def test_statistics() -> None:
    d = describe([0.9, 0.92, 0.94])
    assert d["mean"] == pytest.approx(0.92) and d["std"] == pytest.approx(0.02) and d["n"] == 3
    assert describe([0.5])["std"] == 0.0
    low, high = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert 1.0 <= low < 3.0 < high <= 5.0
    p = paired_difference([0.9, 0.95, 0.93], [0.9, 0.90, 0.92])
    assert p["mean"] == pytest.approx(0.02) and (p["wins"], p["ties"], p["losses"]) == (2, 1, 0)
    # three seeds: the 95% t-interval of the differences (0, 0.05, 0.01), the exact sign-flip p over 2^3 flips
    t = stats.t.interval(0.95, 2, loc=0.02, scale=stats.sem([0.0, 0.05, 0.01]))
    assert (p["ci95_low"], p["ci95_high"]) == pytest.approx(t) and p["n"] == 3
    assert p["p_sign_flip"] == pytest.approx(4 / 8) and p["p_method"] == "exact" and p["bootstrap_ci95"] is None
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([1.0], [1.0, 2.0])


def test_summaries_pair_quantum_with_classical_heads_only() -> None:
    def run(label, head, seed, acc, augmented=False):
        return {"label": label, "head": head, "settings": {}, "seed": seed, "augmented": augmented,
                "best_val_acc": acc, "final_val_acc": acc, "best_val_loss": 0.1, "final_val_loss": 0.1,
                "parameters": 10, "train_s": 1.0}

    runs = [run("quantum", "quantum", s, 0.9 + 0.01 * s) for s in range(3)]
    runs += [run("classical", "classical", s, 0.9) for s in range(3)]
    runs += [run("quantum:depth=2", "quantum", s, 0.8) for s in range(3)]
    summary = summarize(runs)
    pairs = {(p["a"], p["b"]) for p in summary["paired"]}
    assert pairs == {("quantum", "classical"), ("quantum:depth=2", "classical")}
    q = next(p for p in summary["paired"] if p["a"] == "quantum" and p["metric"] == "best_val_acc")
    assert q["mean"] == pytest.approx(0.01)
