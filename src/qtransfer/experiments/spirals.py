"""The paper's first experiment: dressed quantum vs entirely classical nets on the 2-D two-spirals data."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qtransfer.data.spirals import SpiralsData
from qtransfer.models.heads import create_head
from qtransfer.report.figures import save, subplots

HEAD_TITLES = {"classical": "Entirely classical", "quantum": "Dressed quantum"}


@dataclass
class SpiralsResult:
    """One trained classifier: final test metrics, curves and the model."""

    head: str
    turns: float
    seed: int
    test_acc: float
    test_loss: float
    model: nn.Module
    seconds: float
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    test_accs: list[float] = field(default_factory=list)
    test_losses: list[float] = field(default_factory=list)


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    logits = model(x)
    return (logits.argmax(1) == y).sum().item() / len(y), nn.functional.cross_entropy(logits, y).item()


def train_spirals(
    head: str,
    data: SpiralsData,
    steps: int = 1000,
    lr: float = 0.07,
    batch_size: int = 10,
    seed: int = 0,
    n_qubits: int = 5,
    depth: int = 5,
    progress: bool = False,
    eval_every: int = 50,
) -> SpiralsResult:
    """Train head `head` (2 inputs, 2 classes) with Adam on random mini-batches; test every `eval_every` steps."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = create_head(head, 2, 2, n_qubits=n_qubits, depth=depth)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.train_x)
    order, pos = torch.randperm(n, generator=gen), 0
    result = SpiralsResult(head, data.turns, seed, 0.0, 0.0, model, 0.0)

    def record(step: int) -> None:
        acc, loss = _evaluate(model, data.test_x, data.test_y)
        result.eval_steps.append(step)
        result.test_accs.append(acc)
        result.test_losses.append(loss)

    record(0)
    bar = tqdm(range(1, steps + 1), desc=f"{head} {data.turns} turns", unit="step", disable=not progress)
    for step in bar:
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        batch = order[pos : pos + batch_size]
        pos += batch_size
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(data.train_x[batch]), data.train_y[batch])
        loss.backward()
        optimizer.step()
        result.train_loss.append(loss.item())
        if step % eval_every == 0 or step == steps:
            record(step)
            bar.set_postfix(test_acc=f"{result.test_accs[-1]:.3f}")
    bar.close()
    result.test_acc, result.test_loss = result.test_accs[-1], result.test_losses[-1]
    result.seconds = time.perf_counter() - start
    return result


def _heads_in(results: Mapping[tuple[float, str], SpiralsResult]) -> list[str]:
    heads = list(dict.fromkeys(head for _, head in results))
    # classical first, quantum second, like the paper's figure; anything else after
    return sorted(heads, key=lambda h: (list(HEAD_TITLES).index(h) if h in HEAD_TITLES else len(HEAD_TITLES), h))


def _scatter(ax, data: SpiralsData, train: bool) -> None:
    from matplotlib.colors import ListedColormap

    red_blue = ListedColormap(["#FF0000", "#0000FF"])
    if train:
        x, y = data.train_x.numpy(), data.train_y.numpy()
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap=red_blue, s=4, alpha=0.3, linewidths=0, vmin=0, vmax=1)
    x, y = data.test_x.numpy(), data.test_y.numpy()
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap=red_blue, s=16, edgecolors="k", linewidths=0.5, vmin=0, vmax=1)


def plot_decision_boundaries(
    results: Mapping[tuple[float, str], SpiralsResult], datasets: Mapping[float, SpiralsData], path: Path
) -> None:
    """The paper's figure: per dataset, the data, then each classifier's P(class 1) over the plane."""
    heads = _heads_in(results)
    all_turns = sorted(datasets)
    fig, axes = subplots(
        len(all_turns), 1 + len(heads), figsize=(3.6 * (1 + len(heads)), 3.6 * len(all_turns)), squeeze=False
    )
    for row, turns in zip(axes, all_turns):
        data = datasets[turns]
        everything = torch.cat([data.train_x, data.test_x])
        lo, hi = (everything.min(0).values - 0.5).tolist(), (everything.max(0).values + 0.5).tolist()
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)

        _scatter(row[0], data, train=True)
        row[0].set_ylabel(f"{turns:g} turns", fontsize=13)
        for ax, head in zip(row[1:], heads):
            result = results.get((turns, head))
            if result is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
            else:
                with torch.no_grad():
                    prob = torch.softmax(result.model.eval()(grid), 1)[:, 1].reshape(gx.shape)
                ax.contourf(gx.numpy(), gy.numpy(), prob.numpy(), levels=np.linspace(0, 1, 11), cmap="RdBu", alpha=0.8)
                _scatter(ax, data, train=False)
                ax.text(0.97, 0.03, f"{result.test_acc:.3f}", transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=14, bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 2})
        for ax in row:
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_xticks(())
            ax.set_yticks(())
    axes[0, 0].set_title("Input data", fontsize=13)
    for ax, head in zip(axes[0, 1:], heads):
        ax.set_title(HEAD_TITLES.get(head, head), fontsize=13)
    save(fig, path)


def plot_spirals_curves(results: Mapping[tuple[float, str], SpiralsResult], path: Path) -> None:
    """Test accuracy against training step, one panel per dataset, one line per classifier."""
    heads = _heads_in(results)
    all_turns = sorted({turns for turns, _ in results})
    fig, axes = subplots(1, len(all_turns), figsize=(5 * len(all_turns), 3.8), squeeze=False)
    for ax, turns in zip(axes[0], all_turns):
        for head in heads:
            result = results.get((turns, head))
            if result is not None:
                ax.plot(result.eval_steps, result.test_accs, "o-", ms=3,
                        label=f"{HEAD_TITLES.get(head, head)} ({result.test_acc:.3f})")
        ax.axhline(0.5, color="grey", ls=":", label="chance")
        ax.set_title(f"{turns:g} turns")
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.3, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    save(fig, path)
