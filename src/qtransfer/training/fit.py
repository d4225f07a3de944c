"""Heads fitted on features in memory: what `compare`, `cv` and `sweep` run many times over seeds, folds and
settings, same-shape ones stacked and trained together."""
from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from qtransfer.config import TrainConfig
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.models.fitted import FittedHead
from qtransfer.models.heads import HEADS, build_head
from qtransfer.models.stacked import StackedHeads, stackable
from qtransfer.training.loop import Loop, chunks, evaluate
from qtransfer.training.metrics import classification_metrics

# Heads stacked into one model at most: bounds the memory of a step (K x batch x state) and of the best weights.
MAX_STACK = 128


@dataclass
class FitResult:
    """Per-epoch metrics, the best epoch (selected on val), the head with its best weights, and that head's
    held-out metrics when a test split was given."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    parameters: int
    seconds: float
    model: nn.Module = field(repr=False)
    test: dict[str, Any] | None = None
    choices: dict[str, Any] = field(default_factory=dict)  # a fitted head's hyper-parameters chosen by inner CV
    stacked: int = 1  # how many jobs trained together with this one (seconds is its share of their time)


@dataclass
class FitJob:
    """One head to fit: its settings and its data (train, the split that selects the epoch, an optional test);
    for a fitted head, hyper-parameters fixed instead of searched (`fixed`, keys of its SEARCH)."""

    config: TrainConfig
    train: FeatureSplit
    val: FeatureSplit
    test: FeatureSplit | None = None
    fixed: dict[str, Any] = field(default_factory=dict)


def stack_key(job: FitJob) -> tuple[Any, ...] | None:
    """Jobs with equal keys train as one stacked model: same head architecture and schedule, same number of steps
    per epoch, data of the same kind; seeds, learning rates, weight decays and the data themselves may differ.
    None: alone."""
    c = job.config
    measured = c.backend != "torch" or c.shots or c.noise or c.device_options  # the engine's exact path only
    if c.seed_parity or measured or not hasattr(HEADS.lookup(c.head), "stacked_forward"):
        return None
    steps = -(-len(job.train.labels) // c.batch_size)
    settings = json.dumps(asdict(replace(c, seed=0, lr=0.0, weight_decay=0.0, name="")), sort_keys=True)
    return settings, steps, tuple(job.train.features.shape[1:]), job.test is not None


def fit_features(
    config: TrainConfig, train: FeatureSplit, val: FeatureSplit, n_classes: int, device: torch.device,
    test: FeatureSplit | None = None, classes: Sequence[str] | None = None,
) -> FitResult:
    """Train config's head on features with `qtransfer train`'s loop (same seed, same batches, same selection on
    val); then score the selected epoch's head on `test`, which plays no part in training or selection."""
    return fit_group([FitJob(config, train, val, test)], n_classes, device, classes)[0]


def fit_group(jobs: Sequence[FitJob], n_classes: int, device: torch.device,
              classes: Sequence[str] | None = None) -> list[FitResult]:
    """Train jobs of one stack key together as one stacked model (or one job alone); each result equals the job's
    solo fit_features (its own initial weights, batches, learning rate and best epoch)."""
    jobs = _in_memory(jobs, device)
    heads = []
    for job in jobs:
        # the CPU generator alone, where heads are built: torch.manual_seed also queues a CUDA seeding with its
        # stack trace (15 ms a call in a CUDA build), and the CPU stream it sets is the same
        torch.default_generator.manual_seed(job.config.seed)
        head = build_head(job.config, job.train.features.shape[-1], n_classes)
        if job.fixed:
            if not isinstance(head, FittedHead):
                raise TypeError(f"head {job.config.head!r} is trained by steps; only a fitted head takes fixed "
                                f"hyper-parameters ({sorted(job.fixed)})")
            head.fix(job.fixed)
        heads.append(head)
    stack = StackedHeads(heads).to(device) if len(jobs) > 1 or stackable(heads[0]) else None
    model: nn.Module = stack if stack is not None else heads[0].to(device)
    loop = Loop(model, model.parameters(), [j.config for j in jobs], device)
    best: list[dict[str, Any]] = [{} for _ in jobs]

    def keep_best(rows: list[dict[str, Any]]) -> None:
        for k, row in enumerate(rows):
            if row["improved"]:
                best[k] = stack.state_dict_of(k) if stack is not None else copy.deepcopy(model.state_dict())

    same_data = all(j.train is jobs[0].train and j.val is jobs[0].val for j in jobs)
    if same_data:
        train, val = jobs[0].train, jobs[0].val
        seconds = loop.run(lambda: loop.batches(train.features, train.labels), lambda: chunks(val.features, val.labels),
                           keep_best)
    else:
        xs, ys = [j.train.features for j in jobs], [j.train.labels for j in jobs]
        seconds = loop.run(lambda: loop.stacked_batches(xs, ys), lambda: [(j.val.features, j.val.labels) for j in jobs],
                           keep_best)
    results = []
    for k, (job, head) in enumerate(zip(jobs, heads)):
        head.load_state_dict(best[k])
        head.to(device).eval()
        held_out = None
        if job.test is not None:
            probs = evaluate(head, chunks(job.test.features, job.test.labels), device)["probs"]
            held_out = classification_metrics(job.test.labels, probs, classes or range(n_classes))
        parameters = sum(p.numel() for p in head.parameters() if p.requires_grad)
        results.append(FitResult(loop.jobs[k].rows, loop.jobs[k].best, parameters, seconds / len(jobs), head, held_out,
                                 dict(getattr(head, "choices", {})), len(jobs)))
    return results


def _in_memory(jobs: Sequence[FitJob], device: torch.device) -> list[FitJob]:
    """The jobs with their features read whole into memory on `device`, each distinct split once: a stacked group
    reads them K x epochs times (memory-mapped rows are read per batch)."""
    loaded: dict[int, FeatureSplit] = {}

    def load(split: FeatureSplit) -> FeatureSplit:
        if isinstance(split.features, torch.Tensor):
            return split
        if id(split) not in loaded:
            loaded[id(split)] = replace(split, features=split.features.tensor().to(device))
        return loaded[id(split)]

    if len(jobs) == 1:
        return list(jobs)
    return [replace(j, train=load(j.train), val=load(j.val), test=None if j.test is None else load(j.test))
            for j in jobs]


def stack_groups(jobs: Sequence[FitJob], max_stack: int = MAX_STACK) -> list[list[int]]:
    """The jobs' indices in groups that train together (equal stack_key, at most max_stack), in order of first job;
    a job that cannot be stacked is a group of its own."""
    groups: dict[Any, list[int]] = {}
    for i, job in enumerate(jobs):
        key = stack_key(job)
        groups.setdefault(("alone", i) if key is None else key, []).append(i)
    return [g[s : s + max_stack] for g in groups.values() for s in range(0, len(g), max_stack)]
