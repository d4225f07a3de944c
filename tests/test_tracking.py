"""Experiment tracking, read back through the real clients: TensorBoard's event reader, and MlflowClient on the
SQLite database that `--mlflow` makes beside the runs."""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
from PIL import Image
from support.cli import in_process
from support.network import unused_port
from support.runs import metric_rows

from qtransfer.cli import _config, build_parser
from qtransfer.config import TrainConfig
from qtransfer.tracking.tracker import TrackingOff
from qtransfer.training.run import train

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
FIGURES = ("curves", "confusion", "predictions")


def _config_of(data: Path, cache: Path, out: Path, **changes) -> TrainConfig:
    values = {"data": str(data), "head": "linear", "epochs": 2, "cache_dir": str(cache), "out": str(out),
              "num_workers": 0}
    return TrainConfig(**{**values, **changes})


def _args(data: Path, cache: Path, out: Path) -> list[str]:
    return ["--data", str(data), "--epochs", "2", "--workers", "0", "--cache-dir", str(cache), "--out", str(out)]


def _client(out: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")


def _runs(out: Path, experiment: str = "qtransfer") -> list:
    """Every MLflow run of `experiment` in OUT/mlflow.db, oldest first."""
    client = _client(out)
    found = client.get_experiment_by_name(experiment)
    return sorted(client.search_runs([found.experiment_id]), key=lambda r: r.info.start_time)


def _history(out: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(_client(out).get_metric_history(run_id, key), key=lambda m: m.step)]


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture
def database(tracked_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A copy of the tracked run's OUT/mlflow.db in tmp_path, and an experiment of the test's own in it: a new
    database runs MLflow's ~50 schema migrations, 3-15 s here. Returns the experiment's name."""
    shutil.copy(tracked_run[0].parent / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name)
    return request.node.name


@pytest.fixture(scope="module")
def tracked_run(hymenoptera: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 2-epoch linear head on the real features, with --tensorboard and --mlflow (the local SQLite default)."""
    out = tmp_path_factory.mktemp("tracked")
    return train(_config_of(hymenoptera, shared_cache, out, tensorboard=True, mlflow="local"), progress=False)


def test_flags_of_every_training_command_and_old_config_files(tmp_path: Path) -> None:
    parser = build_parser()
    for command in ("train", "compare", "sweep", "cv"):
        args = parser.parse_args([command, "--data", "d"])
        assert (_config(args).tensorboard, _config(args).mlflow) == (False, "")
        args = parser.parse_args([command, "--data", "d", "--mlflow", "--tensorboard"])
        assert (_config(args).tensorboard, _config(args).mlflow) == (True, "local")
        assert _config(parser.parse_args([command, "--mlflow", "http://host:5000"])).mlflow == "http://host:5000"
    old = {k: v for k, v in asdict(TrainConfig(epochs=3)).items() if k not in ("tensorboard", "mlflow")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = TrainConfig.load(tmp_path / "config.json")
    assert (loaded.epochs, loaded.tensorboard, loaded.mlflow) == (3, False, "")


def test_tensorboard_holds_the_epochs_the_settings_with_the_results_and_the_figures(tracked_run) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, summary = tracked_run
    events = _events(run_dir)
    rows = metric_rows(run_dir)
    for key in EPOCH_METRICS:
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows], key
    assert events.Scalars("best_val_acc")[-1].value == pytest.approx(summary["best_val_acc"], rel=1e-6)
    for name in FIGURES:
        (image,) = events.Images(f"figures/{name}")
        assert Image.open(io.BytesIO(image.encoded_image_string)).size == Image.open(run_dir / f"{name}.png").size
    hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in events.PluginTagToContent("hparams").items()}
    settings = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert settings["head"].string_value == "linear" and settings["lr"].number_value == pytest.approx(4e-4)
    assert settings["epochs"].number_value == 2
    metrics = {m.name.tag for m in hparams["_hparams_/experiment"].experiment.metric_infos}
    assert {"best_val_acc", "best_val_loss", "best_epoch", "final_val_acc"} <= metrics


def test_mlflow_holds_the_settings_the_epochs_and_the_run_directory(tracked_run) -> None:
    run_dir, summary = tracked_run
    out = run_dir.parent
    (run,) = _runs(out)
    assert (run.info.run_name, run.info.status) == (run_dir.name, "FINISHED")
    config = json.loads((run_dir / "config.json").read_text())
    assert run.data.params == {k: _text(v) for k, v in config.items()}
    rows = metric_rows(run_dir)
    for key in EPOCH_METRICS:
        assert _history(out, run.info.run_id, key) == [(r["epoch"], r[key]) for r in rows], key
    assert run.data.metrics["best_val_acc"] == summary["best_val_acc"]
    assert run.data.metrics["best_epoch"] == summary["best_epoch"]
    artifacts = {a.path for a in _client(out).list_artifacts(run.info.run_id)}
    assert {"summary.json", "metrics.jsonl", "config.json", "best.pt", *(f"{f}.png" for f in FIGURES)} <= artifacts
    assert not any(a.startswith("events.out.tfevents") for a in artifacts)
    # the artifacts live beside the database, by absolute path
    (stored,) = (out / "mlartifacts").rglob("summary.json")
    assert stored.read_bytes() == (run_dir / "summary.json").read_bytes()
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == run.info.run_id


def test_a_resumed_run_logs_on_into_the_same_runs(hymenoptera, shared_cache, tmp_path, database) -> None:
    cut_dir, _ = train(_config_of(hymenoptera, shared_cache, tmp_path, epochs=1, tensorboard=True, mlflow="local"),
                       progress=False)
    config = json.loads((cut_dir / "config.json").read_text())
    config["epochs"] = 2  # as if a 2-epoch run had been stopped after epoch 1
    (cut_dir / "config.json").write_text(json.dumps(config))
    train(TrainConfig(), resume=cut_dir, progress=False)
    rows = metric_rows(cut_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    (run,) = _runs(tmp_path, database)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "1"  # MLflow keeps the first value
    assert _history(tmp_path, run.info.run_id, "val_acc") == [(r["epoch"], r["val_acc"]) for r in rows]
    logged = [(e.step, e.value) for e in _events(cut_dir).Scalars("val_acc")]
    assert logged == [(r["epoch"], pytest.approx(r["val_acc"], rel=1e-6)) for r in rows]


def _children(out: Path, experiment: str) -> tuple[object, dict[str, object]]:
    """The one parent run of `experiment` in OUT/mlflow.db and its child runs by name."""
    runs = _runs(out, experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    return parent, children


def test_compare_logs_one_parent_with_a_child_per_head_and_seed(hymenoptera, shared_cache, tmp_path, capsys,
                                                               database) -> None:
    code, _, err = in_process(capsys, "--quiet", "compare", *_args(hymenoptera, shared_cache, tmp_path),
                              "--heads", "linear", "classical", "--seeds", "2", "--tensorboard", "--mlflow")
    assert code == 0, err
    (run_dir,) = tmp_path.glob("*-compare")
    parent, children = _children(tmp_path, database)
    assert parent.info.run_name == run_dir.name and parent.info.status == "FINISHED"
    assert parent.data.params["heads"] == '["linear", "classical"]' and parent.data.params["seeds"] == "[42, 43]"
    assert {"compare.json", "compare.md", "compare.png", "runs.jsonl"} <= {
        a.path for a in _client(tmp_path).list_artifacts(parent.info.run_id)}
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()]
    assert sorted(children) == sorted(f"{r['label']}-seed{r['seed']}" for r in runs)
    assert len(children) == 4
    for r in runs:
        name = f"{r['label']}-seed{r['seed']}"
        child = children[name]
        assert (child.data.params["head"], child.data.params["seed"]) == (r["head"], str(r["seed"]))
        assert child.info.status == "FINISHED"
        assert _history(tmp_path, child.info.run_id, "val_acc") == list(enumerate(r["curves"]["val_acc"], 1))
        assert child.data.metrics["best_val_acc"] == r["best_val_acc"]
        logged = [(e.step, e.value) for e in _events(run_dir / "tensorboard" / name).Scalars("val_acc")]
        assert logged == [(i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(r["curves"]["val_acc"], 1)]
    assert _events(run_dir).Images("figures/compare")


def test_cv_logs_a_child_per_head_and_fold(hymenoptera, shared_cache, tmp_path, capsys, database) -> None:
    code, _, err = in_process(capsys, "--quiet", "cv", *_args(hymenoptera, shared_cache, tmp_path), "--heads", "linear",
                         "--folds", "2", "--mlflow")
    assert code == 0, err
    (run_dir,) = tmp_path.glob("*-cv")
    parent, children = _children(tmp_path, database)
    assert parent.data.params["folds"] == "2"
    assert sorted(children) == ["linear-fold0-seed42", "linear-fold1-seed42"]
    for row in json.loads((run_dir / "cv.json").read_text())["folds"]:
        child = children[f"linear-fold{row['fold']}-seed{row['seed']}"]
        assert child.data.metrics["held_out_accuracy"] == row["held_out"]["accuracy"]
        assert len(_history(tmp_path, child.info.run_id, "val_acc")) == 2
    assert "cv.json" in {a.path for a in _client(tmp_path).list_artifacts(parent.info.run_id)}


def test_sweep_logs_a_child_per_point(hymenoptera, shared_cache, tmp_path, capsys, database) -> None:
    code, _, err = in_process(capsys, "--quiet", "sweep", *_args(hymenoptera, shared_cache, tmp_path), "--depths", "0",
                         "--qubit-counts", "2", "--seeds", "1", "--no-classical", "--mlflow")
    assert code == 0, err
    _, children = _children(tmp_path, database)
    assert sorted(children) == ["quantum:qubits=2,depth=6-seed42", "quantum:qubits=4,depth=0-seed42"]
    assert children["quantum:qubits=2,depth=6-seed42"].data.params["n_qubits"] == "2"


def test_an_unreachable_tracking_server_leaves_the_run_whole_with_one_warning(tracked_run, hymenoptera, shared_cache,
                                                                              tmp_path) -> None:
    uri = f"http://127.0.0.1:{unused_port()}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir, summary = train(_config_of(hymenoptera, shared_cache, tmp_path, mlflow=uri), progress=False)
    (off,) = [w for w in caught if issubclass(w.category, TrackingOff)]
    assert uri in str(off.message) and "tracking is off for this run" in str(off.message)
    for name in ("config.json", "metrics.jsonl", "summary.json", "best.pt", "last.pt", *(f"{f}.png" for f in FIGURES)):
        assert (run_dir / name).stat().st_size > 0, name
    assert summary["epochs"] == 2 and not (run_dir / "tracking.json").exists()
    # tracking changes no metric, and not the feature cache's key (the session's cache served both runs)
    untimed = [metric_rows(d, ("epoch", *EPOCH_METRICS)) for d in (tracked_run[0], run_dir)]
    assert untimed[0] == untimed[1]
    assert tracked_run[1]["features_computed"] == summary["features_computed"] == {"train": 0, "val": 0}


def test_a_tracker_failing_midway_says_so_once_and_the_run_goes_on(tmp_path, monkeypatch, database) -> None:
    from qtransfer.tracking.start import start_tracker

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = start_tracker(run_dir, mlflow="local")
        tracker.metrics({"val_acc": 0.5}, 1)

        def down(*args, **kwargs):
            raise ConnectionError("the server went away")

        monkeypatch.setattr(tracker.connection.client, "log_batch", down)
        tracker.metrics({"val_acc": 0.6}, 2)
        tracker.metrics({"val_acc": 0.7}, 3)
        tracker.child("quantum-seed42").metrics({"val_acc": 0.7}, 1)
        tracker.end()
    (off,) = [w for w in caught if issubclass(w.category, TrackingOff)]
    assert "the server went away" in str(off.message)
    (run,) = _runs(tmp_path, database)
    assert _history(tmp_path, run.info.run_id, "val_acc") == [(1, 0.5)]
    assert run.info.status == "RUNNING"  # tracking was off when the run ended


@pytest.mark.parametrize("command", ["train", "compare", "cv"])
@pytest.mark.parametrize(("flag", "package"), [("--tensorboard", "tensorboard"), ("--mlflow", "mlflow")])
def test_a_missing_package_is_one_line_naming_the_extra_before_any_work(command, flag, package, hymenoptera, tmp_path,
                                                                        capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import <package>` now fails as if it were not installed
    out = tmp_path / "runs"
    code, _, err = in_process(capsys, "--quiet", command, "--data", str(hymenoptera), "--out", str(out), "--cache-dir",
                         str(tmp_path / "cache"), flag)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{flag} needs the package {package}: pip install 'qtransfer[tracking]'" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_the_local_database_sits_beside_the_runs_whatever_the_working_directory(tracked_run, tmp_path,
                                                                                 monkeypatch) -> None:
    from qtransfer.tracking.start import mlflow_location

    run_dir, _ = tracked_run
    monkeypatch.chdir(tmp_path)
    uri, artifacts = mlflow_location("local", Path(os.path.relpath(run_dir.parent, tmp_path)))
    assert uri == f"sqlite:///{run_dir.parent.resolve() / 'mlflow.db'}"
    assert artifacts == (run_dir.parent.resolve() / "mlartifacts").as_uri()
    assert mlflow_location("http://host:5000", run_dir.parent) == ("http://host:5000", None)
