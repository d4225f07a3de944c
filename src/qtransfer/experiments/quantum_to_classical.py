"""Scheme QC: a pretrained quantum network A as a frozen feature extractor for a classical network B.

The paper's task B: the 7 two-mode coherent states |±α>|±α>, |±iα>|±iα> (α = 1.4) hit by random Gaussian
displacements (real and imaginary parts each N(0, 0.6²)); network A's 4×4 low-photon block is the feature
vector; network B a linear classifier, Adam lr 0.01, 1000 steps of one noisy copy of each state, tested on
1000 more batches.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer.errors import InputError
from qtransfer.models.quantum_backbones import TetrominoNetwork, tetromino_inputs
from qtransfer.report.figures import save, subplots

CLASSES = ("L", "O", "T", "I", "S", "J", "Z")


def noisy_coherent_states(batches: int, seed: int, noise: float = 0.6) -> tuple[Tensor, Tensor]:
    """`batches` batches of the 7 input states, each displaced by fresh noise: x (batches·7, 4), labels."""
    rng = np.random.default_rng(seed)
    centres = tetromino_inputs().numpy()
    x = np.tile(centres, (batches, 1)) + rng.normal(scale=noise, size=(batches * len(centres), 4))
    y = np.tile(np.arange(len(centres)), batches)
    return torch.from_numpy(x), torch.from_numpy(y)


def notebook_coherent_states(seed: int, train: int = 1000, test: int = 1000, noise: float = 0.6
                             ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The q2c notebook's data, drawn as it draws them: one numpy.random.RandomState(seed) for the training batches
    and then the test batches; per batch of the 7 states the noise of Re α₁, Im α₁, Re α₂, Im α₂ (7 values each),
    added to the centres in complex64 as the notebook's placeholders do. Returns (x, labels) for train and test."""
    rng = np.random.RandomState(seed)
    centres = tetromino_inputs().numpy().astype(np.float32)
    noise_parts = [np.stack([rng.normal(scale=noise, size=len(centres)) for _ in range(4)], 1)
                   for _ in range(train + test)]
    x = np.concatenate([centres + part.astype(np.float32) for part in noise_parts]).astype(np.float64)
    y = np.tile(np.arange(len(centres)), train + test)
    split = train * len(centres)
    return ((torch.from_numpy(x[:split]), torch.from_numpy(y[:split])),
            (torch.from_numpy(x[split:]), torch.from_numpy(y[split:])))


@torch.no_grad()
def features_by_depth(network: TetrominoNetwork, x: Tensor, depths: Sequence[int], chunk: int = 2048
                      ) -> dict[int, Tensor]:
    """Features of the CV network cut after each of `depths` layers, from one pass through its layers."""
    out: dict[int, list[Tensor]] = {d: [] for d in depths}
    for part in x.split(chunk):
        for d, state in enumerate(network.states(part)):
            if d in out:
                out[d].append(network.featurize(state))
            if d == max(depths):
                break
    return {d: torch.cat(v) for d, v in out.items()}


@dataclass
class ClassifierRun:
    """One trained network B: test accuracy and loss, its time; the running (cumulative mean) training loss and
    accuracy after each step, as the notebook prints them."""

    test_acc: float
    test_loss: float
    train_loss: list[float] = field(repr=False)
    seconds: float
    model: nn.Module = field(repr=False)
    train_acc: list[float] = field(repr=False, default_factory=list)


def classical_network(width: int, classes: int, hidden_layers: int = 0, init: str = "torch") -> nn.Module:
    """Network B of the QC notebook: linear, or with ReLU hidden layers of the same width (its c_depth − 1);
    initialised as PyTorch does ("torch") or as the notebook's tf.contrib fully_connected ("notebook")."""
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, width), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(width, classes))
    if init not in ("torch", "notebook"):
        raise InputError(f"network B init must be 'torch' or 'notebook', got {init!r}")
    if init == "notebook":  # TensorFlow 1's defaults: Glorot uniform weights, zero biases
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


def train_classifier(model: nn.Module, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                     batch: int = 7, lr: float = 0.01) -> ClassifierRun:
    """Adam on `model` (logits or log-probabilities out), one batch per step in order; then test accuracy."""
    started = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    running, running_acc, total, total_acc = [], [], 0.0, 0.0
    for step, (xb, yb) in enumerate(zip(train_x.split(batch), train_y.split(batch))):
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()  # loss and accuracy of the weights before this step, as the notebook's session.run
        total_acc += (out.detach().argmax(1) == yb).double().mean().item()
        running.append(total / (step + 1))
        running_acc.append(total_acc / (step + 1))
    with torch.no_grad():
        logits = model(test_x)
        test_loss = loss_fn(logits, test_y).item()
        test_acc = (logits.argmax(1) == test_y).double().mean().item()
    return ClassifierRun(test_acc, test_loss, running, time.perf_counter() - started, model, running_acc)


def plot_feature_images(images: dict[str, Tensor], path: Path) -> None:
    """Rows: networks; columns: the 7 classes; each cell the 4×4 feature image of the noiseless input state."""
    fig, axes = subplots(len(images), len(CLASSES), figsize=(1.5 * len(CLASSES), 1.7 * len(images) + 0.3),
                             squeeze=False)
    for row, (title, feats) in enumerate(images.items()):
        side = round(feats.shape[1] ** 0.5)
        for col, name in enumerate(CLASSES):
            ax = axes[row][col]
            ax.imshow(feats[col].reshape(side, side).numpy(), cmap="viridis", vmin=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"class {col} ({name})", fontsize=9)
            if col == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle("Features of network A for each noiseless input state (4×4 block: rows n₁, columns n₂)",
                 fontsize=10)
    save(fig, path)


def plot_loss_curves(curves: dict[str, list[list[float]]], path: Path, title: str) -> None:
    """Training loss per step (moving average), mean over seeds with the seeds' range shaded; from running means."""
    fig, ax = subplots(figsize=(7, 4))
    top = 0.0
    for label, runs in curves.items():
        running = np.asarray(runs)
        steps = np.arange(1, running.shape[1] + 1)
        per_step = running * steps - np.concatenate([np.zeros((len(running), 1)), running[:, :-1] * steps[:-1]], 1)
        window = max(1, len(steps) // 40)
        kernel = np.ones(window) / window
        smooth = np.array([np.convolve(r, kernel, mode="valid") for r in per_step])
        x = steps[window - 1:]
        ax.plot(x, smooth.mean(0), label=label)
        ax.fill_between(x, smooth.min(0), smooth.max(0), alpha=0.2)
        top = max(top, float(smooth.mean(0)[len(x) // 20:].max()))
    ax.set_ylim(0, 1.15 * top)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (moving average of {window} steps)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_accuracy_by_depth(series: dict[str, dict[int, list[float]]], path: Path) -> None:
    """Test accuracy (mean ± std over seeds) against the number of network A's layers kept."""
    fig, ax = subplots(figsize=(7, 4))
    for label, by_depth in series.items():
        depths = sorted(by_depth)
        mean = [np.mean(by_depth[d]) for d in depths]
        std = [np.std(by_depth[d], ddof=1) if len(by_depth[d]) > 1 else 0 for d in depths]
        ax.errorbar(depths, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xlabel("layers of network A kept (0 = no network A)")
    ax.set_ylabel("test accuracy")
    ax.set_title("QC: where to cut the pretrained quantum network", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)
