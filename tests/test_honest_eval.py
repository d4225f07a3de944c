"""Select on one split, report on another: stratified splits, held-out metrics, cross-validation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import qtransfer.experiments.runner as runner
from qtransfer.config import TrainConfig
from qtransfer.data.splits import stratified_folds, stratified_holdout
from qtransfer.experiments.cv import CVSettings, cross_validate, t_interval
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.training.fit import fit_features
from qtransfer.training.metrics import classification_metrics, roc_auc


def test_holdout_is_stratified_disjoint_and_reproducible() -> None:
    labels = [0] * 123 + [1] * 121
    kept, held = stratified_holdout(labels, 0.2, seed=5)
    assert not set(kept) & set(held) and sorted(kept + held) == list(range(244))
    assert sum(labels[i] for i in held) == round(0.2 * 121) and len(held) == round(0.2 * 123) + round(0.2 * 121)
    assert stratified_holdout(labels, 0.2, seed=5) == (kept, held)
    assert stratified_holdout(labels, 0.2, seed=6) != (kept, held)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        stratified_holdout(labels, 1.0, seed=0)


def test_folds_are_stratified_disjoint_cover_everything_and_reproducible() -> None:
    labels = [0] * 70 + [1] * 83 + [2] * 10
    folds = stratified_folds(labels, 5, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(len(labels)))
    for f in folds:
        counts = [sum(1 for i in f if labels[i] == c) for c in range(3)]
        assert counts[0] in (14,) and counts[1] in (16, 17) and counts[2] == 2
    assert stratified_folds(labels, 5, seed=1) == folds and stratified_folds(labels, 5, seed=2) != folds
    with pytest.raises(ValueError, match="at least 5 samples of every class"):
        stratified_folds([0] * 10 + [1] * 3, 5, seed=0)


def test_metrics_match_hand_computed_values() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    p1 = torch.tensor([0.1, 0.6, 0.3, 0.8, 0.7, 0.4, 0.9, 0.55])
    m = classification_metrics(labels, torch.stack([1 - p1, p1], 1), ["ants", "bees"])
    # predictions: 0 1 0 1 1 0 1 1 -> confusion [[2, 1], [1, 4]]
    assert m["confusion"] == [[2, 1], [1, 4]] and m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["precision"] == pytest.approx({"ants": 2 / 3, "bees": 4 / 5})
    assert m["recall"] == pytest.approx({"ants": 2 / 3, "bees": 4 / 5})
    assert m["f1"]["bees"] == pytest.approx(0.8)
    # AUC: pairs (positive score > negative score) over 5 x 3 pairs: 13 of 15
    assert m["roc_auc"] == pytest.approx(13 / 15) and roc_auc(labels, p1.double()) == m["roc_auc"]
    assert t_interval([0.9, 0.92, 0.94])[0] < 0.92 < t_interval([0.9, 0.92, 0.94])[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_selecting_on_val_inflates_accuracy_on_pure_noise_labels_while_held_out_stays_at_chance() -> None:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> FeatureSplit:
        return FeatureSplit(torch.randn(n, 64, generator=g), torch.randint(0, 2, (n,), generator=g), [])

    # 60 noise samples to fit: with generator seeds 0-4 the selected mean is 0.61-0.65, the held-out mean within
    # 0.005 of 0.5 and the smallest gap 0.066 or more
    train, val, test = split(60), split(60), split(2000)
    selected, held = [], []
    for seed in range(6):
        config = TrainConfig(head="quantum", epochs=40, lr=0.2, gamma=1.0, batch_size=4, seed=seed)
        fit = fit_features(config, train, val, 2, torch.device("cpu"), test=test, classes=["a", "b"])
        selected.append(fit.best["val_acc"])
        held.append(fit.test["accuracy"])
    assert sum(selected) / 6 > 0.57  # the best of 40 epochs on 60 noise labels looks like learning
    assert abs(sum(held) / 6 - 0.5) < 0.03  # on 2000 samples it never saw, it is a coin
    assert min(s - h for s, h in zip(selected, held)) > 0.02


def test_cross_validation_on_the_real_dataset(hymenoptera: Path, shared_cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[set, set]] = []
    real_fit = runner.fit_group

    def spy(jobs, n_classes, device, classes=None):
        seen.extend(({str(p) for p in job.train.paths} | {str(p) for p in job.val.paths},
                     {str(p) for p in job.test.paths})
                    for job in jobs)  # what each stacked fold's fit sees
        return real_fit(jobs, n_classes, device, classes)

    monkeypatch.setattr(runner, "fit_group", spy)
    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, cache_dir=str(shared_cache),
                         out=str(tmp_path), num_workers=0)
    run_dir, result = cross_validate(CVSettings(config, heads=["quantum", "linear"], folds=3))
    assert (run_dir / "cv.md").exists() and json.loads((run_dir / "cv.json").read_text())["samples"] == 397
    assert [(r["head"], r["fold"]) for r in result["folds"]] == [(h, k) for h in ("quantum", "linear")
                                                                  for k in range(3)]
    for r in result["folds"]:
        assert r["train"] + r["select"] + r["test"] == 397
        for m in ("accuracy", "balanced_accuracy", "roc_auc"):
            assert 0.0 <= r["held_out"][m] <= 1.0
    for fitted, tested in seen:  # no held-out file reaches training or selection
        assert fitted and tested and not fitted & tested
    assert set().union(*(t for _, t in seen[:3])) == {str(p) for p in (hymenoptera / "train").rglob("*.jp*g")} | {
        str(p) for p in (hymenoptera / "val").rglob("*.jp*g")} | {str(p) for p in (hymenoptera).rglob("*.png")}
    h = result["summary"]["quantum"]["held_out_accuracy"]
    assert h["n"] == 3 and h["ci95"][0] <= h["mean"] <= h["ci95"][1]


def test_a_holdout_carved_from_train_never_reaches_training_and_can_be_reused(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path
) -> None:
    from qtransfer.training.run import train
    from qtransfer.training.trained import TrainedModel

    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, cache_dir=str(shared_cache),
                         out=str(tmp_path / "a"), num_workers=0, holdout=0.2)
    run_dir, summary = train(config)
    record = json.loads((run_dir / "holdout.json").read_text())
    held = {str(hymenoptera / "train" / f) for f in record["files"]}
    assert summary["counts"]["test"] == {"ants": 25, "bees": 24} and len(held) == 49
    assert summary["counts"]["train"] == {"ants": 98, "bees": 97}
    h = summary["held_out"]
    assert h["images"] == 49 and 0 <= h["accuracy"] <= 1 and summary["accuracy"]["held_out"] == h["accuracy"]
    assert summary["accuracy"]["selected_on_val"] == summary["best_val_acc"]
    assert set(h) >= {"balanced_accuracy", "precision", "recall", "f1", "roc_auc", "confusion"}
    # the run's own model scores the same held-out files again
    again = TrainedModel.load(run_dir).evaluate(split="test")
    assert again["accuracy"] == h["accuracy"] and again["images"] == 49
    # the same list reused by another run holds out exactly those files
    reused, summary2 = train(TrainConfig(**{**json.loads((run_dir / "config.json").read_text()), "holdout": 0.0,
                                            "holdout_list": str(run_dir / "holdout.json"), "out": str(tmp_path / "b")}))
    assert json.loads((reused / "holdout.json").read_text())["files"] == record["files"]
    assert summary2["counts"]["test"] == summary["counts"]["test"]


def test_a_test_folder_is_the_held_out_split(hymenoptera: Path, shared_cache: Path, tmp_path: Path) -> None:
    import shutil

    from qtransfer.training.run import train

    root = tmp_path / "data"
    shutil.copytree(hymenoptera / "train", root / "train")
    shutil.copytree(hymenoptera / "val", root / "val")
    for cls in ("ants", "bees"):  # a test split made of some val images moved out of val
        (root / "test" / cls).mkdir(parents=True)
        for f in sorted((root / "val" / cls).glob("*.jpg"))[:10]:
            f.rename(root / "test" / cls / f.name)
    config = TrainConfig(data=str(root), backbone="efficientnet_lite0", epochs=1, cache_dir=str(shared_cache),
                         out=str(tmp_path / "runs"), num_workers=0)
    _, summary = train(config)
    assert summary["held_out"]["source"] == "test/ folder" and summary["held_out"]["images"] == 20
    assert summary["counts"]["val"] == {"ants": 60, "bees": 73}
    with pytest.raises(ValueError, match="already has a test/ split"):
        train(TrainConfig(**{**config.__dict__, "holdout": 0.2}))


def test_compare_reports_held_out_columns_and_pairs(hymenoptera: Path, shared_cache: Path, tmp_path: Path) -> None:
    from qtransfer.experiments.compare import CompareSettings, compare

    config = TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, cache_dir=str(shared_cache),
                         out=str(tmp_path), num_workers=0, holdout=0.2)
    run_dir, result = compare(CompareSettings(config, ["quantum", "linear"], [1, 2], metrics=["accuracy", "roc_auc"]))
    assert all(0 <= r["held_out_acc"] <= 1 and 0 <= r["held_out_roc_auc"] <= 1 for r in result["runs"])
    assert "held_out_acc" in result["heads"]["quantum"]
    assert any(p["metric"] == "held_out_acc" for p in result["paired"])
    text = (run_dir / "compare.md").read_text()
    assert "held-out test acc" in text and "held-out ROC-AUC" in text and "held-out balanced acc" not in text
    with pytest.raises(ValueError, match="unknown held-out metrics"):
        compare(CompareSettings(config, ["linear"], [1], metrics=["f2"]))


def test_carved_test_files_are_exactly_the_listed_ones_and_never_in_train(hymenoptera: Path, tmp_path: Path) -> None:
    from qtransfer.data.images import load_splits
    from qtransfer.data.splits import carve_holdout

    splits, record = carve_holdout(load_splits(hymenoptera, check=False), 0.25, seed=3)
    train = {p for p, _ in splits["train"].samples}
    test = {p for p, _ in splits["test"].samples}
    val = {p for p, _ in splits["val"].samples}
    assert not train & test and not val & test and len(train) + len(test) == 244
    assert {p.relative_to(hymenoptera / "train").as_posix() for p in test} == set(record["files"])
    (tmp_path / "holdout.json").write_text(json.dumps(record))
    again, _ = carve_holdout(load_splits(hymenoptera, check=False), 0.0, seed=0, listed=tmp_path / "holdout.json")
    assert {p for p, _ in again["test"].samples} == test
