"""`--tune`: every head searched alike. Each head's declared space (models.search, 8 configurations) is scored by
the same stratified inner cross-validation of the training part it is given, with the same inner folds for every
head: a configuration's score is the best epoch of its validation accuracy averaged over inner folds and tuning
seeds (a fitted head has one "epoch"). The best configuration (the first of equals) is then trained as usual."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from qtransfer.config import TrainConfig
from qtransfer.data.splits import stratified_folds
from qtransfer.experiments.runner import Job, run_jobs
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.models.search import label, points, search_space
from qtransfer.training.fit import FitJob, FitResult

INNER_FOLDS = 5
TUNING_FILE = "tuning.jsonl"


@dataclass(frozen=True)
class Candidate:
    """One configuration of a head's search: as settings (a trained head) or fixed hyper-parameters (fitted)."""

    point: dict[str, Any]
    config: TrainConfig
    fixed: dict[str, Any]

    @property
    def label(self) -> str:
        """'key=value,...'."""
        return label(self.point)


def candidates(config: TrainConfig, given: Sequence[str] = ()) -> list[Candidate]:
    """The configurations of config's head: its search space without the keys a head spec already set (`given`)."""
    space = {k: v for k, v in search_space(config.head).items() if k not in given}
    fitted = config.fitted_head()
    return [Candidate(p, config if fitted else replace(config, **p), p if fitted else {}) for p in points(space)]


def tuning_jobs(tag: tuple[Any, ...], config: TrainConfig, given: Sequence[str], part: FeatureSplit,
                seeds: Sequence[int], folds: int = INNER_FOLDS, split_seed: int = 0) -> list[Job]:
    """Every candidate of config's head with every tuning seed on every inner fold of `part` (the training part
    only: what it is then scored on never enters), keyed (*tag, candidate, inner fold, seed)."""
    labels = part.labels.tolist()
    inner = stratified_folds(labels, folds, split_seed)
    splits = []
    for held in inner:
        rest = sorted(set(range(len(labels))) - set(held))
        splits.append((part.subset(rest), part.subset(held)))
    jobs = []
    for c in candidates(config, given):
        for j, (train, val) in enumerate(splits):
            for seed in seeds:
                fit = FitJob(replace(c.config, seed=seed), train, val, None, c.fixed)
                jobs.append(Job((*tag, c.label, j, seed), fit, _recorder(tag, c, j, seed)))
    return jobs


def _recorder(tag: tuple[Any, ...], c: Candidate, j: int, seed: int) -> Callable[[FitResult], dict[str, Any]]:
    def record(fit: FitResult) -> dict[str, Any]:
        return {"tag": list(tag), "candidate": c.label, "point": c.point, "inner": j, "seed": seed,
                "val_acc": [r["val_acc"] for r in fit.rows], "train_s": fit.seconds, "stacked": fit.stacked}

    return record


def tuning_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """A tuning record's job key."""
    return (*r["tag"], r["candidate"], r["inner"], r["seed"])


def choose(config: TrainConfig, given: Sequence[str], tag: tuple[Any, ...], records: Sequence[dict[str, Any]]
           ) -> tuple[Candidate, dict[str, Any]]:
    """The best candidate for `tag` by its records, and the search's summary (every candidate's score)."""
    mine = [r for r in records if tuple(r["tag"]) == tuple(tag)]
    options = candidates(config, given)
    scores = {}
    for c in options:
        curves = [r["val_acc"] for r in mine if r["candidate"] == c.label]
        mean = [sum(v) / len(curves) for v in zip(*curves)]
        scores[c.label] = max(mean)
    best = max(options, key=lambda c: scores[c.label])  # max keeps the first of equals
    return best, {"chosen": best.label, "point": best.point, "scores": scores,
                  "inner_folds": len({r["inner"] for r in mine}), "seeds": sorted({r["seed"] for r in mine})}


@dataclass(frozen=True)
class Search:
    """One head to tune on one training part: its key, settings, the spec's own keys (not searched), the part, and
    the seed of its inner folds."""

    tag: tuple[Any, ...]
    config: TrainConfig
    given: tuple[str, ...]
    part: FeatureSplit
    split_seed: int


def tune(searches: Sequence[Search], seeds: Sequence[int], run_dir: Path, n_classes: int, device: torch.device,
         classes: Sequence[str], progress: bool) -> dict[tuple[Any, ...], tuple[Candidate, dict[str, Any]]]:
    """Every search's jobs through the runner at once (same-shape ones stacked across searches; tuning.jsonl keeps
    them), then per tag the chosen candidate and the search's summary."""
    jobs = [job for s in searches for job in tuning_jobs(s.tag, s.config, s.given, s.part, seeds,
                                                         split_seed=s.split_seed)]
    records = run_jobs(jobs, tuning_key, run_dir, n_classes, device, classes, progress, file=TUNING_FILE)
    return {s.tag: choose(s.config, s.given, s.tag, records) for s in searches}
