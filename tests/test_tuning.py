"""`--tune`: every head searched alike, by inner CV of the outer fold's training part only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.experiments.tuning import candidates, choose
from qtransfer.models.heads import HEADS
from qtransfer.models.search import SEARCH_SIZE, points, search_space


def test_every_head_searches_the_same_number_of_configurations() -> None:
    for head in HEADS:
        assert len(points(search_space(head))) == SEARCH_SIZE, head
        config = TrainConfig(data="-", head=head)
        options = candidates(config)
        assert len({c.label for c in options}) == SEARCH_SIZE
        if config.fitted_head():  # fitted heads take the point as fixed hyper-parameters
            assert all(c.fixed == c.point and c.config == config for c in options)
        else:  # trained heads take it as settings
            assert all(getattr(c.config, k) == v for c in options for k, v in c.point.items())
    # a key a head spec sets is not searched
    assert len(candidates(TrainConfig(data="-", head="quantum", depth=2), given=["depth"])) == SEARCH_SIZE // 2


def test_the_best_mean_curve_wins_and_the_first_of_equals() -> None:
    config = TrainConfig(data="-", head="linear")
    options = candidates(config)
    records = [{"tag": ["linear", 0], "candidate": c.label, "inner": j, "seed": 1,
                "val_acc": [0.5, 0.7] if i in (3, 5) else [0.6, 0.6]} for i, c in enumerate(options) for j in range(2)]
    records[3 * 2 + 1]["val_acc"] = [0.5, 0.69]  # candidate 3's second inner fold: a lower mean than candidate 5
    best, summary = choose(config, (), ("linear", 0), records)
    assert best.label == options[5].label and summary["chosen"] == options[5].label
    assert summary["scores"][options[3].label] == pytest.approx(0.695)
    ties = [dict(r, val_acc=[0.6]) for r in records]
    assert choose(config, (), ("linear", 0), ties)[0].label == options[0].label


def test_the_held_out_fold_never_reaches_tuning_scaling_pca_or_selection(tmp_path: Path, hymenoptera: Path,
                                                                         shared_cache: Path, monkeypatch) -> None:
    import qtransfer.experiments.tuning as tuning
    import qtransfer.models.reduction as reduction

    parts, fitted_rows = {}, []
    real_jobs, real_fit = tuning.tuning_jobs, reduction.Reduction.fit

    def spy_jobs(tag, config, given, part, *args, **kwargs):
        jobs = real_jobs(tag, config, given, part, *args, **kwargs)
        parts[tag] = ({str(p) for p in part.paths}, jobs)
        return jobs

    def spy_fit(self, x):
        fitted_rows.append(np.array(x))
        return real_fit(self, x)

    monkeypatch.setattr(tuning, "tuning_jobs", spy_jobs)
    monkeypatch.setattr(reduction.Reduction, "fit", spy_fit)
    argv = ["--quiet", "cv", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
            "--out", str(tmp_path), "--epochs", "1", "--heads", "linear", "svm:pca=4", "--folds", "2", "--tune"]
    assert cli.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "cv.json").read_text())
    held = {r["fold"]: set(r["test_files"]) for r in result["folds"]}
    assert set(parts) == {(h, k) for h in ("linear", "svm:pca=4") for k in (0, 1)}
    for (_head, k), (part, jobs) in parts.items():
        assert not part & held[k]
        assert len(jobs) == SEARCH_SIZE * 5
        for job in jobs:
            train, val = {str(p) for p in job.fit.train.paths}, {str(p) for p in job.fit.val.paths}
            assert train | val <= part and not train & val and job.fit.test is None
    # every head is searched on the same inner folds
    for k in (0, 1):
        folds = [sorted(sorted(str(p) for p in j.fit.val.paths) for j in parts[h, k][1])
                 for h in ("linear", "svm:pca=4")]
        assert folds[0] == folds[1]
    # scaling and PCA of every fit of the fitted head (tuning and final) saw rows of one outer training part only
    from qtransfer.features.pipeline import load_features

    features = load_features(TrainConfig(data=str(hymenoptera), cache_dir=str(shared_cache), num_workers=0),
                             progress=False)
    pool = features.train + features.val
    def row_key(row: np.ndarray) -> bytes:
        return np.round(np.asarray(row, dtype=np.float64)[:32], 5).tobytes()

    fold_of = {row_key(pool.features[i].numpy()): k
               for k in held for i, p in enumerate(pool.paths) if str(p) in held[k]}
    assert len(fitted_rows) == 2 * (SEARCH_SIZE * 5 + 1)
    for x in fitted_rows:
        folds_seen = {fold_of[row_key(row)] for row in x}
        assert len(folds_seen) == 1, "a fit saw rows of both held-out folds, so of its own"
    # the chosen configuration is the one trained, and recorded per fold
    tuning = {(t["head"], t["fold"]): t for t in result["tuning"]}
    for r in result["folds"]:
        t = tuning[r["head"], r["fold"]]
        assert len(t["scores"]) == SEARCH_SIZE and t["scores"][t["chosen"]] == max(t["scores"].values())
        assert {k: r["choices"][k] for k in t["point"]} == t["point"]
    assert len((run_dir / "tuning.jsonl").read_text().splitlines()) == 2 * 2 * SEARCH_SIZE * 5


def test_compare_tunes_on_train_alone_and_trains_the_choice(tmp_path: Path, hymenoptera: Path, shared_cache: Path,
                                                            monkeypatch) -> None:
    import qtransfer.experiments.tuning as tuning

    parts = {}
    real = tuning.tuning_jobs

    def spy(tag, config, given, part, *args, **kwargs):
        parts[tag] = {str(p) for p in part.paths}
        return real(tag, config, given, part, *args, **kwargs)

    monkeypatch.setattr(tuning, "tuning_jobs", spy)
    argv = ["--quiet", "compare", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
            "--out", str(tmp_path), "--epochs", "1", "--heads", "linear", "logreg", "--seed-list", "3", "4",
            "--tune"]
    assert cli.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "compare.json").read_text())
    from qtransfer.features.pipeline import load_features

    features = load_features(TrainConfig(data=str(hymenoptera), cache_dir=str(shared_cache), num_workers=0),
                             progress=False)
    for tag, part in parts.items():
        assert part == {str(p) for p in features.train.paths}, tag  # val never tunes
    for r in result["runs"]:
        chosen = result["tuning"][r["label"]]
        assert {k: r["choices"][k] for k in chosen["point"]} == chosen["point"]
    assert json.loads((run_dir / "compare_config.json").read_text())["tune"] is True


def test_an_interrupted_search_resumes_without_refitting_and_equals_an_uninterrupted_one(
        tmp_path: Path, hymenoptera: Path, shared_cache: Path, monkeypatch) -> None:
    from test_many_runs import _interrupt_the_second_group

    import qtransfer.experiments.runner as runner

    def argv(out: Path) -> list[str]:
        return ["--quiet", "cv", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
                "--out", str(out), "--epochs", "1", "--heads", "linear", "logreg", "--folds", "2", "--tune"]

    real = _interrupt_the_second_group(monkeypatch)  # linear's 80 candidates x inner folds are the first group
    assert cli.main(argv(tmp_path / "cut")) == 130
    (cut,) = (tmp_path / "cut").iterdir()
    assert len((cut / "tuning.jsonl").read_text().splitlines()) == 2 * SEARCH_SIZE * 5
    assert not (cut / "runs.jsonl").exists()
    fitted = []

    def counting(jobs, *args, **kwargs):
        fitted.extend(j.config.head for j in jobs)
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(runner, "fit_group", counting)
    assert cli.main(["--quiet", "cv", "--resume", str(cut)]) == 0
    assert fitted.count("linear") == 2  # the two outer folds' final fits: no candidate of linear trained again
    assert cli.main(argv(tmp_path / "whole")) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    results = [json.loads((d / "cv.json").read_text()) for d in (cut, whole)]
    assert results[0]["tuning"] == results[1]["tuning"]
    assert [r["held_out"] for r in results[0]["folds"]] == [r["held_out"] for r in results[1]["folds"]]
