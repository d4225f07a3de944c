"""The one training loop: Adam and StepLR over seeded, shuffled mini-batches, validation after every epoch, the
best epoch selected on validation accuracy (ties: lower loss).

The loop trains K jobs at once along a leading model axis (`models.stacked`): same-shape heads that differ in
seed (their initial weights and batch order), learning rate, or data. Each job draws exactly the batches its solo
run draws, from its own generator, and keeps its own rows and best epoch; one Adam steps the stacked tensors. A
single run is the K = 1 case, as a single process is the world-size-1 case of a torchrun job: every rank draws the
same seeded permutation and takes a contiguous slice of each global batch, gradients are averaged by
DistributedDataParallel, and the loss and accuracy are summed over ranks. (A DistributedSampler would draw its own
permutation and pad the last batch by repeating samples: other batches than a single-process run's, so other
metrics.)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from qtransfer import distributed
from qtransfer.config import TrainConfig
from qtransfer.errors import NonFiniteLoss
from qtransfer.features.cache import MappedFeatures
from qtransfer.models.fitted import FittedHead
from qtransfer.models.stacked import Solo, StackedHeads
from qtransfer.runtime import intra_op_threads, threads_for

# Rows scored at once in validation: bounds its memory like a training batch's (see quantum.memory).
EVAL_CHUNK = 256

Batch = tuple[Tensor, Tensor, int]  # this rank's inputs and labels, and the size of the global batch
StackedBatch = tuple[Tensor, Tensor, list[int]]  # (K, B, ...) inputs, (K, B) labels, each job's global batch size
Rows = Tensor | MappedFeatures  # a split's inputs: (N, F) or (N, views, F) in memory, or (N, F) memory-mapped
RowIndex = tuple[Tensor, Tensor | None]  # rows, and each row's view when the inputs have views
# what a loop's jobs are scored on: one iterable of (x, y) chunks for every job, or each job's whole (x, y)
Validation = Iterable[tuple[Tensor, Tensor]] | list[tuple[Rows, Tensor]]


def _batch_indices(x: Rows, batch_size: int, generator: torch.Generator, rank: int = 0,
                   world: int = 1) -> Iterator[tuple[RowIndex, int]]:
    """One epoch's (rows, views) index pairs, each with its global batch size, drawn from `generator`."""
    order, views = _draw(x, generator)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        n = len(idx)
        if world > 1:
            idx = idx.tensor_split(world)[rank]
        yield (idx, None if views is None else views[idx]), n


def _draw(x: Rows, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """An epoch's permutation of the rows and, for x of shape (N, views, F), each row's view."""
    order = torch.randperm(len(x), generator=generator)
    return order, (torch.randint(x.shape[1], (len(x),), generator=generator) if x.dim() == 3 else None)


def _rows(x: Rows, idx: RowIndex) -> Tensor:
    rows, views = idx
    if views is None:
        return x[rows]
    assert isinstance(x, Tensor)  # only inputs in memory have views
    return x[rows, views]


def stacked_batches(
    xs: Sequence[Rows], ys: Sequence[Tensor], batch_size: int, generators: Sequence[torch.Generator],
    rank: int = 0, world: int = 1,
) -> Iterator[StackedBatch]:
    """Each job's own shuffled batches of its (xs[k], ys[k]), stacked along a leading model axis: per epoch a
    permutation of the rows (and, for x of shape (N, views, F), one view per row) drawn from the job's generator,
    cut into batches; under torchrun (one job) each rank takes a contiguous slice of every global batch. So job k
    draws exactly the batches it draws alone. A job whose batch is shorter (fewer rows) is padded with its first
    row; the global batch sizes say how many rows count."""
    if world == 1 and all(x is xs[0] for x in xs) and all(y is ys[0] for y in ys):
        yield from _shared_batches(xs[0], ys[0], batch_size, generators)
        return
    epochs = [_batch_indices(x, batch_size, g, rank, world) for x, g in zip(xs, generators)]
    for step in zip(*epochs):
        width = max(len(idx[0]) for idx, _ in step)
        padded = [(_pad(rows, width), None if views is None else _pad(views, width)) for (rows, views), _ in step]
        x = torch.stack([_rows(xk, idx) for xk, idx in zip(xs, padded)])
        y = torch.stack([yk[idx[0]] for yk, idx in zip(ys, padded)])
        yield x, y, [n for _, n in step]


def _shared_batches(x: Rows, y: Tensor, batch_size: int, generators: Sequence[torch.Generator]
                    ) -> Iterator[StackedBatch]:
    """stacked_batches of jobs that share their data: one gather per step for all of them."""
    draws = [_draw(x, g) for g in generators]
    orders = torch.stack([order for order, _ in draws])  # (K, N)
    drawn = [v for _, v in draws if v is not None]  # every job's, or none: the jobs share x
    views = torch.stack(drawn).gather(1, orders) if drawn else None
    table = x.flatten(0, 1) if views is not None and isinstance(x, Tensor) else x  # row r's view v at r * V + v
    for i in range(0, len(x), batch_size):
        rows = orders[:, i : i + batch_size]
        flat = rows.flatten()
        if views is not None:
            flat = flat * x.shape[1] + views[:, i : i + batch_size].flatten()
        # index_select: a third of advanced indexing's time at these sizes
        picked = table.index_select(0, flat) if isinstance(table, Tensor) else table[flat]
        yield torch.unflatten(picked, 0, rows.shape), y.index_select(0, rows.flatten()).view(rows.shape), \
            [rows.shape[1]] * len(generators)


def _pad(idx: Tensor, width: int) -> Tensor:
    return idx if len(idx) == width else torch.cat([idx, idx[:1].expand(width - len(idx))])


def chunks(x: Rows, y: Tensor, size: int = EVAL_CHUNK) -> Iterator[tuple[Tensor, Tensor]]:
    """(x, y) in consecutive chunks of `size` rows, in order."""
    for i in range(0, len(y), size):
        yield x[i : i + size], y[i : i + size]


def train_epoch(
    model: nn.Module, batches: Iterable[StackedBatch], optimizer: torch.optim.Optimizer, device: torch.device,
    epoch: int, hint: str = "", world: int = 1, lr_scale: Tensor | None = None, names: Sequence[str] = ("",),
    decay: Tensor | None = None,
) -> list[tuple[float, float]]:
    """One epoch of optimizer steps for K stacked jobs, synchronised over `world` ranks; returns each job's mean
    training loss and accuracy over all ranks. With `lr_scale` (K,), the optimizer runs at learning rate 1 (times
    its schedule) and each job's parameters move lr_scale[k] of the way: a learning rate per job. With `decay`
    (K,), job k's gradients gain decay[k] times its parameters, as Adam's weight_decay adds: one per job."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    jobs = len(names)
    loss_total, right_total, seen = [0.0] * jobs, [0] * jobs, [0] * jobs
    for step, (x, y, n) in enumerate(batches, 1):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        logits = model(x)  # (K, B, C)
        losses = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        right = logits.argmax(-1) == y
        counts = torch.tensor(n, dtype=losses.dtype, device=device)
        if world == 1 and min(n) < y.shape[1]:  # some job's batch is shorter: its padding rows do not count
            valid = torch.arange(y.shape[1], device=device) < counts.unsqueeze(1)
            losses, right = losses * valid, right & valid
        loss_sum = losses.sum(1)
        sums = torch.cat([loss_sum.detach(), right.sum(1).to(loss_sum.dtype)]).tolist()
        if world > 1:
            sums = distributed.all_sum(sums, device)
        for k in range(jobs):
            batch_loss = sums[k]
            if not math.isfinite(batch_loss):  # every rank sees the same sum, so all stop together
                lr = optimizer.param_groups[0]["lr"] * (1.0 if lr_scale is None else float(lr_scale[k]))
                raise NonFiniteLoss(f"loss is {batch_loss / n[k]} at epoch {epoch}, step {step}{names[k]}"
                                    f"{'; ' + hint if hint else ''}. Try a lower --lr (now {lr:g}).")
            loss_total[k] += batch_loss
            right_total[k] += int(sums[jobs + k])
            seen[k] += n[k]
        # DDP averages gradients over ranks: so scaled, the average is the gradient of the global batch's mean loss
        torch.autograd.backward((loss_sum / counts * world).sum())
        if decay is not None:
            for p in params:
                p.grad.addcmul_(p.detach(), decay.to(p.dtype).view(-1, *[1] * (p.dim() - 1)))
        if lr_scale is None:
            optimizer.step()
        else:
            before = [p.detach().clone() for p in params]
            optimizer.step()
            for p, b in zip(params, before):
                p.detach().copy_(b.lerp_(p.detach(), lr_scale.to(p.dtype).view(-1, *[1] * (p.dim() - 1))))
    return [(loss_total[k] / seen[k], right_total[k] / seen[k]) for k in range(jobs)]


def fit_once(head: FittedHead, batches: Iterable[Batch], seed: int, device: torch.device) -> tuple[float, float]:
    """Fit a FittedHead on every sample of one epoch's batches at once; returns its training loss and accuracy.
    scikit-learn's BLAS gets torch's thread count: more threads than cores a process may use make every BLAS call
    wait for the busiest core (a fit under contention took 15x as long)."""
    from threadpoolctl import threadpool_limits

    parts = [(x, y) for x, y, _ in batches]
    x, y = torch.cat([p[0] for p in parts]).to(device), torch.cat([p[1] for p in parts]).to(device)
    with threadpool_limits(limits=torch.get_num_threads()):
        head.fit(x, y, seed)
    fitted = evaluate(head, [(x, y)], device)
    return fitted["loss"], fitted["acc"]


def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, predictions and probabilities of `model` over the batches, without gradients."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            logits.append(model(x.to(device)).float().cpu())
            labels.append(y)
    return scores(torch.cat(logits), torch.cat(labels))


def evaluate_stacked(model: StackedHeads | Solo, val: Validation, device: torch.device) -> list[dict[str, Any]]:
    """evaluate() for each of a stacked model's K jobs: on one iterable of (x, y) chunks that every job is scored
    on, or on a list of K whole (x, y) splits, one per job (scored in chunks, shorter ones padded)."""
    model.eval()
    jobs = model.models
    with torch.no_grad():
        if not isinstance(val, list):
            parts, labels = [], []
            for x, y in val:
                x = x.to(device)
                parts.append(model(x.unsqueeze(0).expand(jobs, *x.shape)).float().cpu())
                labels.append(y)
            logits, y = torch.cat(parts, 1), torch.cat(labels)
            return [scores(logits[k], y) for k in range(jobs)]
        sizes = [len(y) for _, y in val]
        parts = []
        for i in range(0, max(sizes), EVAL_CHUNK):
            width = min(EVAL_CHUNK, max(sizes) - i)
            x = torch.stack([_pad_rows(xk[i : i + width], width) for xk, _ in val]).to(device)
            parts.append(model(x).float().cpu())
        logits = torch.cat(parts, 1)
        return [scores(logits[k, :n], y) for k, (n, (_, y)) in enumerate(zip(sizes, val))]


def _pad_rows(x: Tensor, width: int) -> Tensor:
    return x if len(x) == width else torch.cat([x, x.new_zeros(width - len(x), *x.shape[1:])])


def scores(logits: Tensor, y: Tensor) -> dict[str, Any]:
    """Mean loss, accuracy, predictions and probabilities of logits (N, C) for labels (N,)."""
    pred = logits.argmax(1)
    return {"loss": float(nn.functional.cross_entropy(logits, y, reduction="sum") / len(y)),
            "acc": int((pred == y).sum()) / len(y), "pred": pred, "probs": logits.softmax(1), "labels": y}


def adam(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam in one fused kernel per step (half the time of the foreach kernels at the head's batch of 4, where
    the step is overhead-bound); where a torch build has no fused Adam for these tensors, the foreach one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


@dataclass
class Job:
    """What one of a loop's jobs keeps apart from the others: settings, batch generator, rows, best epoch."""

    config: TrainConfig
    generator: torch.Generator
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf})

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """Add an epoch's row; returns it with `improved` set when it is the best epoch so far."""
        self.rows.append(row)
        improved = (row["val_acc"], -row["val_loss"]) > (self.best["val_acc"], -self.best["val_loss"])
        if improved:
            self.best = {"epoch": row["epoch"], "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        return {**row, "improved": improved}


def step_amplitudes(config: TrainConfig, models: int = 1) -> int:
    """The numbers one training step of `models` stacked heads simulates at once: state amplitudes x rows for a
    quantum head on the built-in engine (density matrices square them), none for classical heads."""
    if config.head != "quantum" or config.backend != "torch":
        return 0
    size = 1 << (2 * config.n_qubits if config.noise else config.n_qubits)
    return size * config.batch_size * models


class Loop:
    """K same-shape jobs' stacked model, optimizer, scheduler, batch generators, per-epoch rows and best epochs,
    trained epoch by epoch.

    `model` is what runs forward: a `StackedHeads` of K heads (one config each, same architecture, epochs, batch
    size and schedule; seeds, learning rates and data may differ), or any single module (a head, or backbone +
    head in seed-parity mode) as the K = 1 case. `params` is what is trained. With `shared`, the ranks of a
    torchrun job train one model together (each on its slice of every batch); without, this process trains it
    alone. Each job's generator is seeded with its config's seed; seed torch before building each head for its
    initial weights.
    """

    def __init__(self, model: nn.Module, params: Iterable[nn.Parameter], configs: TrainConfig | Sequence[TrainConfig],
                 device: torch.device, shared: bool = False):
        configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
        self.config, self.device = configs[0], device
        self.fitted = isinstance(model, FittedHead)
        self.model: FittedHead | StackedHeads | Solo = (
            model if isinstance(model, (FittedHead, StackedHeads, Solo)) else Solo(model))
        models = 1 if isinstance(self.model, FittedHead) else self.model.models
        if models != len(configs):
            raise ValueError(f"a loop of {len(configs)} jobs needs a model of as many heads, got {models}")
        together = shared and distributed.is_distributed()
        self.rank, self.world = (distributed.rank(), distributed.world_size()) if together else (0, 1)
        device_ids = [device.index] if device.type == "cuda" else None
        self.trainer: nn.Module = DistributedDataParallel(self.model, device_ids=device_ids) if together else self.model
        self.jobs = [Job(c, torch.Generator().manual_seed(c.seed)) for c in configs]
        self.epochs = 1 if self.fitted else self.config.epochs
        self.threads = threads_for(step_amplitudes(self.config, len(configs)), self.config.threads)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.StepLR | None = None
        self.lr_scale: Tensor | None = None
        self.decay: Tensor | None = None  # per job, when the jobs' weight decays differ
        if not self.fitted:
            lrs, decays = [c.lr for c in configs], [c.weight_decay for c in configs]
            if len(set(lrs)) > 1:
                self.lr_scale = torch.tensor(lrs, dtype=torch.float64, device=device)
            if len(set(decays)) > 1:
                self.decay = torch.tensor(decays, dtype=torch.float64, device=device)
            self.optimizer = adam(params, 1.0 if self.lr_scale is not None else lrs[0],
                                  0.0 if self.decay is not None else decays[0])
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=self.config.step_size,
                                                             gamma=self.config.gamma)

    # the first (or only) job's, for a single run
    @property
    def rows(self) -> list[dict[str, Any]]:
        """The first job's per-epoch rows."""
        return self.jobs[0].rows

    @property
    def best(self) -> dict[str, Any]:
        """The first job's best epoch."""
        return self.jobs[0].best

    @property
    def generator(self) -> torch.Generator:
        """The first job's batch generator."""
        return self.jobs[0].generator

    def epoch(self, train: Iterable[StackedBatch], val: Validation, hint: str = "") -> list[dict[str, Any]]:
        """Train one epoch on `train`, score each job on its `val` (one iterable of chunks for all, or one per job),
        record the rows; returns them with `improved` set for the jobs whose best epoch this is."""
        t = time.perf_counter()
        self.model.train()
        epoch = len(self.rows) + 1
        if isinstance(self.model, FittedHead):
            batches = ((x[0], y[0], n[0]) for x, y, n in train)
            results = [fit_once(self.model, batches, self.config.seed, self.device)]
        else:
            assert self.optimizer is not None and self.scheduler is not None  # made for every head trained by steps
            names = [f" (seed {j.config.seed}, lr {j.config.lr:g})" for j in self.jobs] if len(self.jobs) > 1 else [""]
            results = train_epoch(self.trainer, train, self.optimizer, self.device, epoch, hint, self.world,
                                  self.lr_scale, names, self.decay)
            self.scheduler.step()
        train_s = time.perf_counter() - t
        if isinstance(self.model, FittedHead):
            assert not isinstance(val, list)  # a fitted head is fitted alone, and scored on chunks
            scored = [evaluate(self.model, val, self.device)]
        else:
            scored = evaluate_stacked(self.model, val, self.device)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.0
        out = []
        for k, (job, (train_loss, train_acc), v) in enumerate(zip(self.jobs, results, scored)):
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": v["loss"],
                   "val_acc": v["acc"], "lr": lr * (float(self.lr_scale[k]) if self.lr_scale is not None else 1.0),
                   "train_s": train_s / len(self.jobs), "epoch_s": (time.perf_counter() - t) / len(self.jobs)}
            out.append(job.record(row))
        return out

    def batches(self, x: Rows, y: Tensor) -> Iterator[StackedBatch]:
        """This process's slices of one epoch of shuffled batches of (x, y), drawn by each job's generator."""
        return self.stacked_batches([x] * len(self.jobs), [y] * len(self.jobs))

    def stacked_batches(self, xs: Sequence[Rows], ys: Sequence[Tensor]) -> Iterator[StackedBatch]:
        """One epoch of each job's shuffled batches of its own (xs[k], ys[k]), stacked along the model axis."""
        return stacked_batches(xs, ys, self.config.batch_size, [j.generator for j in self.jobs], self.rank, self.world)

    def run(
        self, train: Callable[[], Iterable[StackedBatch]], val: Callable[[], Validation],
        after_epoch: Callable[[list[dict[str, Any]]], None] = lambda rows: None, hint: Callable[[], str] = lambda: "",
        progress: bool = False,
    ) -> float:
        """Train the epochs left (config.epochs; one for a FittedHead) on `self.threads` intra-op threads, calling
        `after_epoch(rows)` (one row per job) after each; returns the seconds."""
        t = time.perf_counter()
        bar = tqdm(range(len(self.rows) + 1, self.epochs + 1), desc="epochs", unit="epoch",
                   disable=not (progress and distributed.is_main()))
        with intra_op_threads(self.threads):
            for _ in bar:
                rows = self.epoch(train(), val(), hint())
                after_epoch(rows)
                bar.set_postfix(loss=f"{rows[0]['train_loss']:.3f}", val_acc=f"{rows[0]['val_acc']:.3f}",
                                best=f"{self.best['val_acc']:.3f}")
        return time.perf_counter() - t

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs besides the weights: optimizer, scheduler, batch generators, RNG, rows, bests (one
        job's as single values, as a single run always wrote them; K jobs' as lists)."""
        single = len(self.jobs) == 1
        pick = (lambda values: values[0]) if single else list
        return {"optimizer": self.optimizer.state_dict() if self.optimizer else {},
                "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                "generator": pick([j.generator.get_state() for j in self.jobs]), "torch_rng": torch.get_rng_state(),
                "rows": pick([j.rows for j in self.jobs]), "best": pick([j.best for j in self.jobs])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict() of the same settings."""
        if self.optimizer and self.scheduler:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        single = len(self.jobs) == 1
        for k, job in enumerate(self.jobs):
            generator, rows, best = ((state["generator"], state["rows"], state["best"]) if single
                                     else (state["generator"][k], state["rows"][k], state["best"][k]))
            job.generator.set_state(generator)
            job.rows, job.best = list(rows), dict(best)
        torch.set_rng_state(state["torch_rng"])
