"""The trackers a run asked for (--tensorboard, --mlflow [URI]), their packages checked before any work."""
from __future__ import annotations

import importlib
from pathlib import Path

from qtransfer import distributed
from qtransfer.errors import MissingPackageError
from qtransfer.tracking.tracker import Fanout, Tracker

LOCAL = "local"  # --mlflow without a URI: an SQLite database beside the run directories
PACKAGES = {"--tensorboard": "tensorboard", "--mlflow": "mlflow"}


def check_installed(tensorboard: bool, mlflow: str) -> None:
    """Refuse --tensorboard or --mlflow when its package is missing, naming what to install."""
    asked = {"--tensorboard": tensorboard, "--mlflow": bool(mlflow)}
    for flag, package in PACKAGES.items():
        if not asked[flag]:
            continue
        try:
            importlib.import_module(package)
        except ImportError:
            raise MissingPackageError(f"{flag} needs the package {package}: pip install 'qtransfer[tracking]' "
                                      f"(or pip install {package})") from None


def mlflow_location(setting: str, out: Path) -> tuple[str, str | None]:
    """The tracking URI of --mlflow SETTING and where a new experiment keeps its artifacts (None: the server's
    choice). 'local' is the SQLite database OUT/mlflow.db with artifacts in OUT/mlartifacts/, by absolute path."""
    if setting != LOCAL:
        return setting, None
    out = Path(out).resolve()
    return f"sqlite:///{out / 'mlflow.db'}", (out / "mlartifacts").as_uri()


def start_tracker(run_dir: Path, tensorboard: bool = False, mlflow: str = "", resume: bool = False,
                  first_step: int = 1) -> Tracker:
    """The tracker of the run in `run_dir` (made in OUT/): rank 0's; the other ranks' logs nothing. A resumed run
    logs on from epoch `first_step` into the same event files and, when tracking.json names it, the same MLflow run."""
    if not distributed.is_main():
        return Tracker()
    trackers: list[Tracker] = []
    if tensorboard:
        from qtransfer.tracking.tensorboard import TensorBoardTracker

        trackers.append(TensorBoardTracker(run_dir, first_step))
    if mlflow:
        from qtransfer.tracking.mlflow import start_mlflow

        uri, artifacts = mlflow_location(mlflow, Path(run_dir).parent)
        trackers.append(start_mlflow(uri, Path(run_dir), artifacts, resume))
    return trackers[0] if len(trackers) == 1 else Fanout(trackers)
