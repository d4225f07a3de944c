"""Many runs as one: same-shape jobs trained together equal their solo runs; the runner resumes; threads by size."""
from __future__ import annotations

import fcntl
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.errors import Interrupted
from qtransfer.features.pipeline import FeatureSplit, load_features
from qtransfer.models.heads import build_head
from qtransfer.runtime import PARALLEL_AMPLITUDES, cores, threads_for
from qtransfer.training.fit import FitJob, fit_group, stack_groups
from qtransfer.training.loop import Loop, chunks

HEADS = ("quantum", "classical", "linear")


def _solo(config: TrainConfig, train: FeatureSplit, val: FeatureSplit, n_classes: int = 2) -> Loop:
    """The job trained alone, as `qtransfer train` trains it: the head as a plain module, K = 1."""
    torch.manual_seed(config.seed)
    head = build_head(config, train.features.shape[-1], n_classes)
    loop = Loop(head, head.parameters(), config, torch.device("cpu"))
    loop.run(lambda: loop.batches(train.features, train.labels), lambda: chunks(val.features, val.labels))
    return loop


def _synthetic(n: int, seed: int, features: int = 24) -> FeatureSplit:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g, dtype=torch.float64)
    return FeatureSplit(x, (x[:, 0] + 0.3 * x[:, 1] > 0).long(), [Path(f"{seed}-{i}") for i in range(n)])


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_stacked_jobs_equal_their_solo_runs_in_float64(head: str, float64: None) -> None:
    train, val = _synthetic(61, 0), _synthetic(23, 1)
    base = TrainConfig(data="-", head=head, epochs=5, step_size=2, gamma=0.5)
    configs = [replace(base, seed=s, lr=lr) for s, lr in zip(range(5), (4e-4, 4e-4, 1e-3, 3e-3, 4e-4))]
    stacked = fit_group([FitJob(c, train, val) for c in configs], 2, torch.device("cpu"))
    assert [r.stacked for r in stacked] == [5] * 5
    for config, result in zip(configs, stacked):
        solo = _solo(config, train, val)
        assert result.best["epoch"] == solo.best["epoch"]
        for a, b in zip(result.rows, solo.rows):
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9, rel=0)
            assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6, rel=0)  # scored in float32, as solo
            assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
    # the learning rates differ, so the models did too: not one model trained five times
    assert len({round(r.rows[-1]["train_loss"], 12) for r in stacked}) == 5


@pytest.mark.parametrize("head", HEADS)
def test_stacked_jobs_with_their_own_weight_decays_equal_adams_own_in_solo_runs(head: str, float64: None) -> None:
    """Each job's decay is added to its own gradients in the stack; alone, torch's Adam(weight_decay=) does it."""
    train, val = _synthetic(41, 2), _synthetic(17, 3)
    base = TrainConfig(data="-", head=head, epochs=4, step_size=2, gamma=0.5, depth=2)
    configs = [replace(base, seed=s, lr=lr, weight_decay=wd)
               for s, lr, wd in zip((3, 4, 5), (4e-3, 1e-2, 4e-3), (0.0, 0.5, 2.0))]
    stacked = fit_group([FitJob(c, train, val) for c in configs], 2, torch.device("cpu"))
    assert [r.stacked for r in stacked] == [3] * 3
    for config, result in zip(configs, stacked):
        solo = _solo(config, train, val)
        assert solo.decay is None and solo.optimizer.defaults["weight_decay"] == config.weight_decay
        assert result.best["epoch"] == solo.best["epoch"]
        assert [r["train_loss"] for r in result.rows] == pytest.approx([r["train_loss"] for r in solo.rows],
                                                                        abs=1e-9, rel=0)
        assert [r["val_acc"] for r in result.rows] == [r["val_acc"] for r in solo.rows]
    # the decay did something: the same seed and lr without it ends elsewhere
    (plain,) = fit_group([FitJob(replace(configs[2], weight_decay=0.0), train, val)], 2, torch.device("cpu"))
    assert abs(plain.rows[-1]["train_loss"] - stacked[2].rows[-1]["train_loss"]) > 1e-4


def test_jobs_on_different_data_stack_with_their_own_batches(float64: None) -> None:
    """Folds of unequal size (one fewer row: a shorter last batch) train together and equal their solo runs."""
    base = TrainConfig(data="-", head="classical", epochs=3, batch_size=4)
    splits = [(_synthetic(n, 10 + n), _synthetic(m, 20 + n)) for n, m in ((30, 11), (29, 12), (31, 10))]
    jobs = [FitJob(replace(base, seed=i), tr, va) for i, (tr, va) in enumerate(splits)]
    assert stack_groups(jobs) == [[0, 1, 2]]  # 8 steps each
    for job, result in zip(jobs, fit_group(jobs, 2, torch.device("cpu"))):
        solo = _solo(job.config, job.train, job.val)
        assert result.best["epoch"] == solo.best["epoch"]
        assert [r["train_loss"] for r in result.rows] == pytest.approx([r["train_loss"] for r in solo.rows],
                                                                        abs=1e-9, rel=0)
        assert [r["val_acc"] for r in result.rows] == [r["val_acc"] for r in solo.rows]


def test_jobs_on_augmented_views_draw_each_samples_view_as_alone(float64: None) -> None:
    plain = _synthetic(26, 3)
    views = plain.features.unsqueeze(1) + 0.1 * torch.randn(26, 3, plain.features.shape[1], dtype=torch.float64)
    train, val = FeatureSplit(views, plain.labels, plain.paths), _synthetic(9, 4)
    configs = [TrainConfig(data="-", head="linear", epochs=3, seed=s) for s in (5, 6, 7)]
    for config, result in zip(configs, fit_group([FitJob(c, train, val) for c in configs], 2, torch.device("cpu"))):
        solo = _solo(config, train, val)
        assert [r["train_loss"] for r in result.rows] == pytest.approx([r["train_loss"] for r in solo.rows],
                                                                        abs=1e-9, rel=0)


def test_what_cannot_stack_trains_alone() -> None:
    train, val = _synthetic(20, 0), _synthetic(8, 1)
    base = TrainConfig(data="-", head="quantum", epochs=1)
    jobs = [FitJob(base, train, val), FitJob(replace(base, seed=3), train, val),
            FitJob(replace(base, depth=2), train, val),  # another architecture
            FitJob(replace(base, shots=100), train, val),  # measured, by parameter shift
            FitJob(replace(base, head="logreg"), train, val),  # fitted in one call
            FitJob(replace(base, epochs=2), train, val)]  # another schedule
    assert stack_groups(jobs) == [[0, 1], [2], [3], [4], [5]]
    assert stack_groups([FitJob(replace(base, seed=s), train, val) for s in range(5)], max_stack=2) == \
        [[0, 1], [2, 3], [4]]


@pytest.fixture(scope="module")
def real_features(hymenoptera: Path, shared_cache: Path):
    return load_features(TrainConfig(data=str(hymenoptera), cache_dir=str(shared_cache), num_workers=0),
                         progress=False)


@pytest.mark.parametrize("head", HEADS)
def test_stacked_jobs_equal_their_solo_runs_on_the_real_features_in_float32(head: str, real_features) -> None:
    train, val = real_features.train, real_features.val
    configs = [TrainConfig(data="-", head=head, epochs=3, step_size=2, seed=s, lr=lr)  # an lr grid stacks too
               for s, lr in zip(range(42, 47), (4e-4, 4e-4, 1e-3, 4e-4, 2e-3))]
    stacked = fit_group([FitJob(c, train, val) for c in configs], 2, torch.device("cpu"))
    for config, result in zip(configs, stacked):
        solo = _solo(config, train, val)
        assert result.best["epoch"] == solo.best["epoch"]
        for a, b in zip(result.rows, solo.rows):
            for metric in ("train_loss", "train_acc", "val_loss", "val_acc"):
                assert a[metric] == pytest.approx(b[metric], abs=1e-4, rel=0), (config.seed, a["epoch"], metric)


def _compare(tmp_path: Path, hymenoptera: Path, shared_cache: Path, *extra: str) -> list[str]:
    return ["--quiet", "compare", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
            "--out", str(tmp_path / "runs"), "--epochs", "2", "--heads", "linear", "classical", "--seed-list", "1",
            "2", "3", *extra]


def _strip(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_s"} for r in runs]


def _interrupt_the_second_group(monkeypatch):
    """The runner fits its first stacked group, then is interrupted (Ctrl-C) at the second; returns the real fit."""
    import qtransfer.experiments.runner as runner

    real, calls = runner.fit_group, []

    def interrupted_second_group(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "fit_group", interrupted_second_group)
    return real


def test_an_interrupted_group_resumed_equals_an_uninterrupted_run(tmp_path: Path, hymenoptera: Path,
                                                                   shared_cache: Path, monkeypatch) -> None:
    import qtransfer.experiments.runner as runner

    assert cli.main(_compare(tmp_path / "clean", hymenoptera, shared_cache)) == 0
    (clean,) = (tmp_path / "clean" / "runs").iterdir()
    expected = json.loads((clean / "compare.json").read_text())["runs"]
    assert [r["stacked"] for r in expected] == [3] * 6  # each head's three seeds trained as one model

    real = _interrupt_the_second_group(monkeypatch)
    with pytest.raises(Interrupted, match="3 finished run"):
        from qtransfer.experiments.compare import CompareSettings, compare

        settings = CompareSettings(TrainConfig(data=str(hymenoptera), cache_dir=str(shared_cache), num_workers=0,
                                               out=str(tmp_path / "cut"), epochs=2), ["linear", "classical"], [1, 2, 3])
        compare(settings, progress=False)
    (cut,) = (tmp_path / "cut").iterdir()
    assert len((cut / "runs.jsonl").read_text().splitlines()) == 3
    monkeypatch.setattr(runner, "fit_group", real)
    assert cli.main(["--quiet", "compare", "--resume", str(cut)]) == 0
    assert _strip(json.loads((cut / "compare.json").read_text())["runs"]) == _strip(expected)


def test_every_settings_file_a_command_writes_is_a_config_file_for_it(tmp_path: Path, hymenoptera: Path,
                                                                      shared_cache: Path) -> None:
    assert cli.main(_compare(tmp_path, hymenoptera, shared_cache, "--epochs", "1", "--threads", "1")) == 0
    (run,) = (tmp_path / "runs").iterdir()
    saved = run / "compare_config.json"
    args = cli.parse_args(["compare", "--config", str(saved)])
    assert (args.heads, args.seed_list, args.epochs, args.threads) == (["linear", "classical"], [1, 2, 3], 1, 1)
    assert json.loads(saved.read_text())["seed_list"] == [1, 2, 3]

    cv_out = tmp_path / "cv"
    assert cli.main(["--quiet", "cv", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
                     "--out", str(cv_out), "--epochs", "1", "--heads", "linear", "--folds", "2", "--seed-list",
                     "5", "6"]) == 0
    (cv_dir,) = cv_out.iterdir()
    args = cli.parse_args(["cv", "--config", str(cv_dir / "cv_config.json")])
    assert (args.heads, args.folds, args.seed_list, args.epochs) == (["linear"], 2, [5, 6], 1)
    result = json.loads((cv_dir / "cv.json").read_text())
    assert [(r["fold"], r["seed"]) for r in result["folds"]] == [(0, 5), (0, 6), (1, 5), (1, 6)]
    assert {r["stacked"] for r in result["folds"]} == {4}  # two folds x two seeds, one model
    summary = result["summary"]["linear"]["held_out_accuracy"]
    assert summary["n"] == 2  # seeds averaged within a fold; the interval is over folds

    from qtransfer.experiments.sweep import SweepSettings

    sweep = SweepSettings(TrainConfig(data="d"), depths=[0, 1], qubits=[2], seeds=[7], no_classical=True)
    path = tmp_path / "sweep_config.json"
    path.write_text(sweep.to_json())
    args = cli.parse_args(["sweep", "--config", str(path)])
    assert (args.depths, args.qubit_counts, args.seed_list, args.no_classical) == ([0, 1], [2], [7], True)
    assert SweepSettings.load(path) == sweep


def test_a_settings_file_from_before_flat_files_still_resumes(tmp_path: Path) -> None:
    from dataclasses import asdict

    from qtransfer.experiments.compare import CompareSettings

    settings = CompareSettings(TrainConfig(data="d", epochs=3), ["linear"], [4, 5])
    old = tmp_path / "compare_config.json"
    old.write_text(json.dumps({**asdict(settings), "config": asdict(settings.config)}))
    assert CompareSettings.load(old) == settings

    from qtransfer.experiments.sweep import SweepSettings

    sweep = SweepSettings(TrainConfig(data="d"), depths=[1], qubits=[2], seeds=[3], no_classical=True)
    values = {**asdict(sweep), "config": asdict(sweep.config), "classical": False}
    del values["no_classical"]
    old.write_text(json.dumps(values))
    assert SweepSettings.load(old) == sweep


def test_cv_resumes_without_refitting_and_refuses_a_directory_in_use(tmp_path: Path, hymenoptera: Path,
                                                                     shared_cache: Path, monkeypatch) -> None:
    import qtransfer.experiments.runner as runner
    from qtransfer.errors import DirectoryInUse
    from qtransfer.runtime import LOCK_FILE

    argv = ["--quiet", "cv", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
            "--out", str(tmp_path), "--epochs", "1", "--heads", "linear", "logreg", "--folds", "2"]
    real = _interrupt_the_second_group(monkeypatch)
    assert cli.main(argv) == 130
    (run_dir,) = tmp_path.iterdir()
    assert len((run_dir / "runs.jsonl").read_text().splitlines()) == 2  # linear's two folds, stacked
    from qtransfer.experiments.cv import CVSettings, cross_validate

    with open(run_dir / LOCK_FILE, "a") as other:  # another holder: flocks of two open files exclude each other
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DirectoryInUse):
            cross_validate(CVSettings(TrainConfig()), progress=False, resume=run_dir)
    monkeypatch.setattr(runner, "fit_group", real)
    assert cli.main(["--quiet", "cv", "--resume", str(run_dir)]) == 0
    result = json.loads((run_dir / "cv.json").read_text())
    assert [(r["head"], r["fold"]) for r in result["folds"]] == [("linear", 0), ("linear", 1), ("logreg", 0),
                                                                 ("logreg", 1)]


def test_threads_follow_the_size_of_a_step() -> None:
    assert threads_for(0) == 1 and threads_for(PARALLEL_AMPLITUDES - 1) == 1
    assert threads_for(PARALLEL_AMPLITUDES) == cores()
    assert threads_for(10**9, requested=3) == 3
    small = TrainConfig(data="-", n_qubits=4, batch_size=4)
    head = build_head(small, 8, 2)
    assert Loop(head, head.parameters(), small, torch.device("cpu")).threads == 1
    large = replace(small, n_qubits=12)  # 2^12 amplitudes x 4 rows = 2^14
    head = build_head(large, 8, 2)
    assert Loop(head, head.parameters(), large, torch.device("cpu")).threads == cores()
    pinned = replace(large, threads=1)
    assert Loop(head, head.parameters(), pinned, torch.device("cpu")).threads == 1


def test_a_run_records_its_threads_and_restores_torchs(finished_run) -> None:
    _, summary = finished_run
    assert summary["threads"] == 1
    assert torch.get_num_threads() == 1  # the session's setting, restored after training
    assert math.isfinite(summary["best_val_loss"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fitted_heads_search_their_grid_in_parallel_only_where_cores_are_free(monkeypatch) -> None:
    from sklearn import model_selection

    import qtransfer.models.fitted as fitted

    train, original, fits = _synthetic(80, 5), model_selection.GridSearchCV, {}
    for free in (1, 2):
        seen: list[int] = []

        def spy(*args, seen=seen, **kwargs):
            seen.append(kwargs["n_jobs"])
            return original(*args, **kwargs)

        monkeypatch.setattr(fitted, "free_cores", lambda free=free: free)
        monkeypatch.setattr(model_selection, "GridSearchCV", spy)
        head = build_head(TrainConfig(data="-", head="logreg"), train.features.shape[1], 2)
        head.fit(train.features.float(), train.labels, 0)
        fits[free] = (seen, head.choices, head(train.features.float()).detach())
    assert fits[1][0] == [1] and fits[2][0] == [2]
    assert fits[1][1] == fits[2][1] and torch.equal(fits[1][2], fits[2][2])  # the same choice, the same model
