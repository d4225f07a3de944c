"""The one training loop: Adam and StepLR over seeded, shuffled mini-batches, validation after every epoch, the
best epoch selected on validation accuracy (ties: lower loss).

A single process is the world-size-1 case of a torchrun job: every rank draws the same seeded permutation and
takes a contiguous slice of each global batch, gradients are averaged by DistributedDataParallel, and the loss
and accuracy are summed over ranks. (A DistributedSampler would draw its own permutation and pad the last batch
by repeating samples: other batches than a single-process run's, so other metrics.)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from qtransfer import distributed
from qtransfer.config import TrainConfig
from qtransfer.errors import NonFiniteLoss
from qtransfer.models.fitted import FittedHead

# Rows scored at once in validation: bounds its memory like a training batch's (see quantum.memory).
EVAL_CHUNK = 256

Batch = tuple[Tensor, Tensor, int]  # this rank's inputs and labels, and the size of the global batch


def shuffled_batches(
    x: Any, y: Tensor, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1,
) -> Iterator[Batch]:
    """Rank `rank`'s slice of each shuffled global batch (of `world` slices); x of shape (N, views, F) gives each
    sample one view drawn at random. `x` may be a tensor or memory-mapped features (rows read batch by batch)."""
    order = torch.randperm(len(x), generator=generator)
    views = torch.randint(x.shape[1], (len(x),), generator=generator) if x.dim() == 3 else None
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        n = len(idx)
        if world > 1:
            idx = idx.tensor_split(world)[rank]
        yield (x[idx] if views is None else x[idx, views[idx]]), y[idx], n


def chunks(x: Any, y: Tensor, size: int = EVAL_CHUNK) -> Iterator[tuple[Tensor, Tensor]]:
    """(x, y) in consecutive chunks of `size` rows, in order."""
    for i in range(0, len(y), size):
        yield x[i : i + size], y[i : i + size]


def train_epoch(
    model: nn.Module, batches: Iterable[Batch], optimizer: torch.optim.Optimizer, device: torch.device,
    epoch: int, hint: str = "", world: int = 1,
) -> tuple[float, float]:
    """One epoch of optimizer steps, synchronised over `world` ranks; returns the mean training loss and
    accuracy over all of them."""
    total_loss, correct, seen = 0.0, 0, 0
    for step, (x, y, n) in enumerate(batches, 1):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        logits = model(x)
        loss_sum = nn.functional.cross_entropy(logits, y, reduction="sum")
        sums = [loss_sum.item(), int((logits.argmax(1) == y).sum())]
        batch_loss, batch_right = distributed.all_sum(sums, device) if world > 1 else sums
        if not math.isfinite(batch_loss):  # every rank sees the same sum, so all stop together
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLoss(f"loss is {batch_loss / n} at epoch {epoch}, step {step}{'; ' + hint if hint else ''}. "
                                f"Try a lower --lr (now {lr:g}).")
        # DDP averages gradients over ranks: so scaled, the average is the gradient of the global batch's mean loss
        (loss_sum / n * world).backward()
        optimizer.step()
        total_loss += batch_loss
        correct += int(batch_right)
        seen += n
    return total_loss / seen, correct / seen


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
    losses, preds, probs, labels = [], [], [], []
    with torch.no_grad():
        for x, y in batches:
            logits = model(x.to(device)).float().cpu()
            losses.append(nn.functional.cross_entropy(logits, y, reduction="sum"))
            probs.append(logits.softmax(1))
            preds.append(logits.argmax(1))
            labels.append(y)
    y = torch.cat(labels)
    pred = torch.cat(preds)
    return {"loss": float(torch.stack(losses).sum() / len(y)), "acc": int((pred == y).sum()) / len(y),
            "pred": pred, "probs": torch.cat(probs), "labels": y}


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam in one fused kernel per step (half the time of the foreach kernels at the head's batch of 4, where
    the step is overhead-bound); where a torch build has no fused Adam for these tensors, the foreach one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class Loop:
    """A model's optimizer, scheduler, batch generator, per-epoch rows and best epoch, trained epoch by epoch.

    `model` is what runs forward (a head, or backbone + head in seed-parity mode); `params` what is trained.
    With `shared`, the ranks of a torchrun job train this one model together (each on its slice of every batch);
    without, this process trains it alone (as `compare` does with the runs it was given). The generator is
    seeded with the config's seed; seed torch before building the model for its initial weights.
    """

    def __init__(self, model: nn.Module, params: Iterable[nn.Parameter], config: TrainConfig, device: torch.device,
                 shared: bool = False):
        self.model, self.config, self.device = model, config, device
        together = shared and distributed.is_distributed()
        self.rank, self.world = (distributed.rank(), distributed.world_size()) if together else (0, 1)
        self.trainer = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                        if together else model)
        self.fitted = isinstance(model, FittedHead)
        self.epochs = 1 if self.fitted else config.epochs
        self.optimizer = self.scheduler = None
        if not self.fitted:
            self.optimizer = adam(params, config.lr)
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.step_size,
                                                             gamma=config.gamma)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}

    def epoch(self, train: Iterable[Batch], val: Iterable[tuple[Tensor, Tensor]], hint: str = "") -> dict[str, Any]:
        """Train one epoch on `train`, score `val`, record the row; returns it with `improved` set when it is
        the best epoch so far."""
        t = time.perf_counter()
        self.model.train()
        epoch = len(self.rows) + 1
        if self.fitted:
            train_loss, train_acc = fit_once(self.model, train, self.config.seed, self.device)  # type: ignore[arg-type]
        else:
            train_loss, train_acc = train_epoch(self.trainer, train, self.optimizer, self.device, epoch, hint,
                                                self.world)
            self.scheduler.step()
        train_s = time.perf_counter() - t
        v = evaluate(self.model, val, self.device)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.0
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": v["loss"],
               "val_acc": v["acc"], "lr": lr, "train_s": train_s, "epoch_s": time.perf_counter() - t}
        self.rows.append(row)
        improved = (row["val_acc"], -row["val_loss"]) > (self.best["val_acc"], -self.best["val_loss"])
        if improved:
            self.best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        return {**row, "improved": improved}

    def batches(self, x: Any, y: Tensor) -> Iterator[Batch]:
        """This process's slices of one epoch of shuffled batches of (x, y), drawn from the loop's generator."""
        return shuffled_batches(x, y, self.config.batch_size, self.generator, self.rank, self.world)

    def run(
        self, train: Callable[[], Iterable[Batch]], val: Callable[[], Iterable[tuple[Tensor, Tensor]]],
        after_epoch: Callable[[dict[str, Any]], None] = lambda row: None, hint: Callable[[], str] = lambda: "",
        progress: bool = False,
    ) -> float:
        """Train the epochs left (config.epochs; one for a FittedHead), calling `after_epoch(row)` after each; returns the seconds."""
        t = time.perf_counter()
        bar = tqdm(range(len(self.rows) + 1, self.epochs + 1), desc="epochs", unit="epoch",
                   disable=not (progress and distributed.is_main()))
        for _ in bar:
            row = self.epoch(train(), val(), hint())
            after_epoch(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}",
                            best=f"{self.best['val_acc']:.3f}")
        return time.perf_counter() - t

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs besides the weights: optimizer, scheduler, batch generator, RNG, rows, best."""
        return {"optimizer": self.optimizer.state_dict() if self.optimizer else {},
                "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "rows": self.rows, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict() of the same settings."""
        if self.optimizer and self.scheduler:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.rows, self.best = list(state["rows"]), dict(state["best"])
