"""What a run tells its trackers: settings, per-epoch metrics, final results, figures, files; and nested runs."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any


class TrackingOff(UserWarning):
    """A tracker could not be reached or failed: the run goes on and writes its directory as usual."""


class Tracker:
    """Logs one run; this base logs nothing (the tracker of a run without --tensorboard or --mlflow). As a context
    manager it ends the run: FINISHED, KILLED when interrupted, FAILED on an error."""

    def params(self, values: Mapping[str, Any]) -> None:
        """The run's settings."""

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """Metrics of one epoch (`step`, counted from 1)."""

    def results(self, values: Mapping[str, float]) -> None:
        """The run's final metrics (TensorBoard shows them beside the settings in its hyper-parameter table)."""

    def figures(self, paths: Iterable[Path]) -> None:
        """The run's PNG figures."""

    def files(self, folder: Path) -> None:
        """The files of the run's directory as they are at its end."""

    def child(self, name: str) -> Tracker:
        """A run nested under this one (one head and seed of a comparison)."""
        return Tracker()

    def end(self, status: str = "FINISHED") -> None:
        """Close the run: FINISHED, FAILED or KILLED."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.end("FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


class Fanout(Tracker):
    """Several trackers told the same things."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def params(self, values: Mapping[str, Any]) -> None:
        """The run's settings, to every tracker."""
        for t in self.trackers:
            t.params(values)

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """One epoch's metrics, to every tracker."""
        for t in self.trackers:
            t.metrics(values, step)

    def results(self, values: Mapping[str, float]) -> None:
        """The final metrics, to every tracker."""
        for t in self.trackers:
            t.results(values)

    def figures(self, paths: Iterable[Path]) -> None:
        """The figures, to every tracker."""
        paths = list(paths)
        for t in self.trackers:
            t.figures(paths)

    def files(self, folder: Path) -> None:
        """The run directory's files, to every tracker."""
        for t in self.trackers:
            t.files(folder)

    def child(self, name: str) -> Tracker:
        """A nested run in every tracker."""
        return Fanout([t.child(name) for t in self.trackers])

    def end(self, status: str = "FINISHED") -> None:
        """Close the run in every tracker."""
        for t in self.trackers:
            t.end(status)
