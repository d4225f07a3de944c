"""The one runner of commands made of many fits (compare, sweep, cv and the reproductions built on them).

A command describes its work as jobs (what to fit, and the line of runs.jsonl a finished fit becomes); the runner
owns everything else: the run directory, its settings file and lock, the tracker and a child run per job,
`--resume` (a finished job is never run again), interrupts, sharing jobs among torchrun's ranks, and training
same-shape jobs together as one stacked model (`training.fit.stack_groups`, `fit_group`).
"""
from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from tqdm.auto import tqdm

from qtransfer import distributed
from qtransfer.config import TrainConfig
from qtransfer.errors import InputError, Interrupted, MissingFileError
from qtransfer.runtime import check_run_dir, held_run_dir, open_run_dir
from qtransfer.storage import atomic_write_text
from qtransfer.tracking.start import check_installed, start_tracker
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.fit import FitJob, FitResult, fit_group, stack_groups

RUNS_FILE = "runs.jsonl"
T = TypeVar("T")


@dataclass
class Job:
    """One fit of a command: its identity among the command's jobs, what is fitted, and how its finished fit
    becomes a line of runs.jsonl."""

    key: tuple[Any, ...]
    fit: FitJob
    record: Callable[[FitResult], dict[str, Any]]


@dataclass
class Experiment(Generic[T]):
    """A run directory being filled: where, with which tracker, and what `prepare` gave."""

    dir: Path
    tracker: Tracker
    prepared: T


@contextlib.contextmanager
def experiment(
    command: str, config: TrainConfig, resume: Path | None, files: dict[str, str], prepare: Callable[[], T],
) -> Iterator[Experiment[T]]:
    """A new run directory (or the one being resumed) holding `files` (name -> text: the settings first, so a
    kill at any moment leaves it resumable), locked against other processes, with rank 0's tracker; an interrupt
    says how many jobs are kept and how to continue. `prepare()` (the features) runs after a resumed directory is
    locked and before a new one is made, so a directory in use is refused before any work, and bad data leave
    no directory behind."""
    check_installed(config.tensorboard, config.mlflow)
    with contextlib.ExitStack() as held:
        if resume is not None:
            held.enter_context(held_run_dir(Path(resume)))
        prepared = prepare()
        run_dir = held.enter_context(open_run_dir(config.out, config.name or command, resume, files))
        tracker = held.enter_context(start_tracker(run_dir, config.tensorboard, config.mlflow,
                                                   resume=resume is not None))
        try:
            yield Experiment(run_dir, tracker, prepared)
        except KeyboardInterrupt:
            kept = sorted(run_dir.glob("*.jsonl"))  # runs.jsonl, and tuning.jsonl of a --tune
            done = sum(len(read_runs(f)) for f in kept)
            where = ", ".join(str(f) for f in kept) or str(run_dir / RUNS_FILE)
            raise Interrupted(f"interrupted; {done} finished run(s) are kept in {where}. "
                              f"Continue with: qtransfer {command} --resume {run_dir}") from None


def resumable(run_dir: Path, name: str) -> Path:
    """The settings file `name` of an interrupted run directory, or an error saying to start anew."""
    check_run_dir(run_dir)
    if not (run_dir / name).exists():
        raise MissingFileError(f"{run_dir} has no {name}; start anew without --resume")
    return run_dir / name


def run_jobs(
    jobs: Sequence[Job], key_of: Callable[[dict[str, Any]], tuple[Any, ...]], run_dir: Path, n_classes: int,
    device: torch.device, classes: Sequence[str] | None = None, progress: bool = True,
    track: Callable[[dict[str, Any]], None] = lambda record: None, file: str = RUNS_FILE,
) -> list[dict[str, Any]]:
    """Every job's record, finished ones read from runs.jsonl (or `file`; `key_of(record)` is its job's key;
    records of no job are dropped) and the others fitted, same-shape ones stacked. After each stacked group the file
    is rewritten whole, so an interruption keeps every finished job. Under torchrun each rank fits every world-th group
    left and rank 0 gathers them, in the jobs' order; `track(record)` is called on rank 0 for each new record."""
    path = run_dir / file
    done = read_runs(path)
    shared = distributed.broadcast(done if distributed.is_main() else None)  # rank 0's file decides what is left
    done = shared if shared is not None else []
    wanted = {j.key for j in jobs}
    done = [r for r in done if key_of(r) in wanted]  # a record no job asks for any more is dropped
    have = {key_of(r) for r in done}
    todo = [j for j in jobs if j.key not in have]
    # whole groups are shared, so that each is stacked as in one process and its results are the same
    mine = distributed.share(stack_groups([j.fit for j in todo]))
    new: list[dict[str, Any]] = []
    bar = tqdm(total=sum(map(len, mine)), desc="runs", unit="run", disable=not (progress and distributed.is_main()))
    for group in mine:
        results = fit_group([todo[i].fit for i in group], n_classes, device, classes)
        records = [todo[i].record(r) for i, r in zip(group, results)]
        new += records
        if distributed.is_main():  # rank 0's finished jobs survive an interruption; the others' arrive at the end
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in done + new))
            for r in records:
                track(r)
        bar.update(len(group))
    bar.close()
    if not distributed.is_distributed():
        return done + new
    parts = distributed.gather(new)
    by_key = {key_of(r): r for part in parts for r in part}
    done = done + [by_key[j.key] for j in todo]
    if distributed.is_main():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in done))
        for r in (r for part in parts[1:] for r in part):  # the other ranks' jobs
            track(r)
    return done


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The finished runs in a runs.jsonl (none when it does not exist). The file is rewritten whole on every
    change, so it is never torn; a last line that is anyway (a copy cut short) is left out, to be run again."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    runs = []
    for i, line in enumerate(lines):
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise InputError(f"line {i + 1} of {path} is not a JSON object; delete that line (its run is "
                                 f"run again) and rerun with --resume {path.parent}") from None
            warnings.warn(f"the last line of {path} is cut short; its run is run again", stacklevel=2)
    return runs
