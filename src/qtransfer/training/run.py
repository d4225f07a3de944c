"""`qtransfer train`: a head trained on a frozen backbone's cached features in a run directory, checkpointed
after every epoch and resumable.

`train` builds a run whole from its pieces: the data (`run_data`), the model (`run_model`), the loop, the run
directory with its checkpoints (`checkpoints`) and outputs (`run_outputs`), and the tracker; `Run` composes them.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from qtransfer import distributed
from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.errors import InputError, Interrupted
from qtransfer.runtime import check_run_dir, held_run_dir, open_run_dir, resolve_device
from qtransfer.tracking.start import check_installed, start_tracker
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.checkpoints import RunCheckpoints, load_checkpoint
from qtransfer.training.loop import Loop, evaluate
from qtransfer.training.run_data import RunData
from qtransfer.training.run_model import RunModel
from qtransfer.training.run_outputs import RunOutputs


@dataclass
class Run:
    """A training run in its directory, built whole: its data, model and loop, the checkpoints and outputs it writes
    into its directory, and its tracker. `timings` carries on from a resumed run's."""

    config: TrainConfig
    device: torch.device
    data: RunData
    model: RunModel
    loop: Loop
    checkpoints: RunCheckpoints
    outputs: RunOutputs
    tracker: Tracker
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        """The run directory."""
        return self.checkpoints.dir

    def prepare(self) -> None:
        """Extract (or read cached) features, unless seed-parity mode runs the backbone every step."""
        if self.config.seed_parity:
            return
        t = time.perf_counter()
        self.data.extract(self.device, self.progress)
        self.timings["features_s"] = time.perf_counter() - t

    def fit(self) -> None:
        """Train the remaining epochs, checkpointing after each."""
        seconds = self.loop.run(lambda: self.data.train_batches(self.loop), self.data.eval_batches,
                                self._after_epoch, self._nan_hint, progress=self.progress)
        self.timings["train_s"] = self.timings.get("train_s", 0.0) + seconds

    def _nan_hint(self) -> str:
        best = self.loop.best["epoch"]
        return (f"the best checkpoint so far (epoch {best}) is kept in {self.dir / 'best.pt'}" if best
                else "no epoch finished, so there is no checkpoint")

    def _after_epoch(self, rows: list[dict[str, Any]]) -> None:
        (row,) = rows
        state = self._model_state()
        if row["improved"]:
            self.checkpoints.save_best(state)
        self.checkpoints.save_last({**state, **self.loop.state_dict(), "timings": self.timings}, self.loop.rows)
        self.tracker.metrics({k: v for k, v in row.items() if k not in ("epoch", "improved")}, row["epoch"])

    def _model_state(self) -> dict[str, Any]:
        return self.model.state(self.data.classes, self.loop.best["epoch"])

    def finish(self, started: float) -> dict[str, Any]:
        """Evaluate the best epoch, draw the figures, write summary.json (total_s counts from `started`)."""
        self.model.load(self.checkpoints.best(), self.data.classes)
        val = evaluate(self.model.module, self.data.eval_batches(), self.device)
        held_out = self.outputs.held_out(self.model, self.data, self.device)
        matrix = self.outputs.figures(self.loop, val, self.data)
        self.timings["total_s"] = time.perf_counter() - started
        summary = self.outputs.summary(self.loop, self.data, self.model, matrix, held_out, self.timings, self.device)
        self.outputs.write(summary)
        return summary


def train(config: TrainConfig, resume: Path | None = None, progress: bool = True,
          changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) a training; returns the run directory and its summary. A resumed run keeps its saved
    settings, with `changes` applied to those that may change (see config.RESUMABLE); `config` is then unused. A
    run killed before its first epoch was saved starts again from epoch 1."""
    started = time.perf_counter()
    with contextlib.ExitStack() as held:
        last = None
        if resume is not None:
            resume = Path(resume)
            check_run_dir(resume)
            held.enter_context(held_run_dir(resume))  # refuse a run another process is continuing, first
            config = (changes or ResumeChanges()).apply(TrainConfig.load(resume / "config.json"))
            if (resume / "last.pt").exists():
                last = load_checkpoint(resume / "last.pt", resume=True)
                _check_epochs(config, len(last["rows"]), changes)
        config.validate()
        check_installed(config.tensorboard, config.mlflow)
        if distributed.is_distributed():
            _check_distributable(config)
        device = resolve_device(config.device)
        data = RunData.load(config, progress)  # the backbone loaded and the data checked before any directory is made
        model = RunModel.build(config, data.backbone, len(data.classes), device)
        loop = Loop(model.module, model.head.parameters(), config, device, shared=True)
        files = {"config.json": config.to_json()}
        if data.holdout is not None:
            files["holdout.json"] = json.dumps(data.holdout, indent=2)
        run_dir = held.enter_context(open_run_dir(config.out, config.name or f"{config.backbone}-{config.head}",
                                                  resume, files))
        checkpoints = RunCheckpoints(run_dir)
        timings: dict[str, float] = {}
        if last is not None:  # continue from a last.pt written by these settings
            model.load(last, data.classes)
            loop.load_state_dict(last)
            timings = dict(last["timings"])
            checkpoints.save_metrics(loop.rows)  # a kill between last.pt and metrics.jsonl leaves it an epoch short
        tracker = held.enter_context(start_tracker(run_dir, config.tensorboard, config.mlflow,
                                                   resume=resume is not None, first_step=len(loop.rows) + 1))
        tracker.params(asdict(config))
        run = Run(config, device, data, model, loop, checkpoints, RunOutputs(run_dir, tracker), tracker, progress,
                  timings)
        try:
            run.prepare()
            run.fit()
        except KeyboardInterrupt:
            done = len(loop.rows)
            saved = (f"{done} finished epoch(s) are saved in {run_dir / 'last.pt'} and metrics.jsonl" if done else
                     f"no epoch finished; the settings are saved in {run_dir / 'config.json'}")
            raise Interrupted(f"interrupted; {saved}. Continue with: qtransfer train --resume {run_dir}") from None
        summary: dict[str, Any] = distributed.broadcast(run.finish(started) if distributed.is_main() else {})
        return run_dir, summary


def _check_epochs(config: TrainConfig, finished: int, changes: ResumeChanges | None) -> None:
    """Refuse fewer epochs than the resumed run has finished (a head fitted in one call has one, whatever is set)."""
    if config.epochs < finished and not config.fitted_head():
        flag = (changes.flags.get("epochs", "epochs") if changes else "epochs")
        raise InputError(f"{flag} {config.epochs} is fewer than the {finished} epochs the resumed run has finished; "
                         f"pass {flag} {finished} or more to extend it, or drop it to finish the run as it was set")


def _check_distributable(config: TrainConfig) -> None:
    """Refuse settings that one process must run, and a global batch the ranks cannot share evenly."""
    if config.seed_parity:
        raise InputError("--seed-parity runs the tutorial's single-process loop; launch it without torchrun")
    if config.fitted_head():
        raise InputError(f"head {config.head!r} is fitted in one call on all training samples; train it without "
                         f"torchrun (compare, cv and sweep share such heads' runs between ranks)")
    distributed.check_batch(config.batch_size)
