"""MLflow runs through MlflowClient (no global active run): the settings as parameters, metrics per epoch, the run
directory's files as artifacts; a comparison is a parent run with nested child runs. A tracking server that cannot
be reached, or fails later, turns tracking off for the run with one warning; the run itself goes on."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run

from qtransfer.storage import atomic_write_text
from qtransfer.tracking.tracker import Tracker, TrackingOff

EXPERIMENT = "qtransfer"  # unless $MLFLOW_EXPERIMENT_NAME names another
RECORD = "tracking.json"  # in the run directory: its MLflow run, so that --resume logs on into the same run
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests runs
MAX_PARAMS = 100  # per log_batch call
MAX_PARAM_LENGTH = 6000
# Found out in seconds, not after MLflow's default of 7 retries with back-off (unless the user set these).
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Connection:
    """A tracking URI's client, shared by a run and its children; off for good after its first failure, said once."""

    def __init__(self, client: MlflowClient, uri: str):
        self.client, self.uri, self.on = client, uri, True

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), or None (with one warning for the run) when it fails or tracking is off."""
        if not self.on:
            return None
        try:
            with _quiet():
                return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - whatever the service raises turns tracking off, never the run
            self.on = False
            warnings.warn(f"MLflow tracking is off for the rest of this run: {what} at {self.uri} failed "
                          f"({_short(err)}); the run directory is written as usual", TrackingOff, stacklevel=3)
            return None


class MlflowTracker(Tracker):
    """One MLflow run; `logged` are the parameters a resumed run already has (MLflow keeps a parameter's first
    value)."""

    def __init__(self, connection: Connection, experiment_id: str, run_id: str,
                 logged: Mapping[str, str] | None = None):
        self.connection, self.experiment_id, self.run_id = connection, experiment_id, run_id
        self.logged = dict(logged or {})

    def params(self, values: Mapping[str, Any]) -> None:
        """Every setting as a parameter (its text)."""
        params = [Param(key, _text(value)) for key, value in values.items() if key not in self.logged]
        for i in range(0, len(params), MAX_PARAMS):
            self._call("logging parameters", "log_batch", self.run_id, params=params[i : i + MAX_PARAMS])

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """The epoch's metrics with step = epoch."""
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in values.items()]
        self._call("logging metrics", "log_batch", self.run_id, metrics=batch)

    def results(self, values: Mapping[str, float]) -> None:
        """The final metrics (step 0)."""
        self.metrics(values, 0)

    def files(self, folder: Path) -> None:
        """The directory's files as artifacts (not its sub-folders, TensorBoard's event files, nor hidden files: the
        lock, temporary files)."""
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and not path.name.startswith(("events.out.tfevents", ".")):
                self._call(f"uploading {path.name}", "log_artifact", self.run_id, str(path))

    def child(self, name: str) -> Tracker:
        """A run nested under this one."""
        run = self._call("starting a child run", "create_run", self.experiment_id, run_name=name,
                         tags={PARENT_TAG: self.run_id})
        return MlflowTracker(self.connection, self.experiment_id, run.info.run_id) if run is not None else Tracker()

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self._call("ending the run", "set_terminated", self.run_id, status)

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.connection.call(what, getattr(self.connection.client, method), *args, **kwargs)


def start_mlflow(uri: str, run_dir: Path, artifact_location: str | None = None, resume: bool = False) -> Tracker:
    """The MLflow run of `run_dir` at `uri` (on --resume the one tracking.json names, when it is still there);
    a tracker that logs nothing, with one warning, when `uri` cannot be used."""
    try:
        with _quiet(), _fail_fast():
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment(client, artifact_location)
            run = _recorded_run(client, run_dir, uri) if resume else None
            if run is not None:
                client.update_run(run.info.run_id, status="RUNNING")
            else:
                run = client.create_run(experiment_id, run_name=run_dir.name,
                                        tags={"qtransfer.run_dir": str(run_dir.resolve())})
    except Exception as err:  # noqa: BLE001 - a server that cannot be used turns tracking off, never the run
        warnings.warn(f"MLflow tracking is off for this run: cannot log to {uri} ({_short(err)}); the run "
                      f"directory is written as usual", TrackingOff, stacklevel=3)
        return Tracker()
    record = {"mlflow": {"tracking_uri": uri, "run_id": run.info.run_id}}
    atomic_write_text(run_dir / RECORD, json.dumps(record, indent=2))
    return MlflowTracker(Connection(client, uri), run.info.experiment_id, run.info.run_id, run.data.params)


def _experiment(client: MlflowClient, artifact_location: str | None) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _recorded_run(client: MlflowClient, run_dir: Path, uri: str) -> Run | None:
    """The run tracking.json records for this URI, if MLflow still has it."""
    path = run_dir / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text()).get("mlflow", {})
    if record.get("tracking_uri") != uri:
        return None
    try:
        run = client.get_run(record["run_id"])
    except Exception:  # noqa: BLE001 - a run MLflow no longer has, for any reason, is started afresh
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def _short(err: Exception) -> str:
    """The error's first line; a long one keeps its start (what failed) and its end (why: "Connection refused")."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return first if len(first) <= 300 else f"{first[:140]} ... {first[-150:]}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow logs its database set-up at INFO and SQLAlchemy warns of its own deprecations: neither is for the user."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    unset = [key for key in FAIL_FAST if key not in os.environ]
    os.environ.update({key: FAIL_FAST[key] for key in unset})
    try:
        yield
    finally:
        for key in unset:
            os.environ.pop(key, None)
