"""What a run leaves for people: curves, a prediction grid, a confusion matrix, a short table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor  # noqa: E402


def confusion_matrix(labels: Tensor, preds: Tensor, n_classes: int) -> Tensor:
    """Counts (true class, predicted class)."""
    return torch.bincount(labels * n_classes + preds, minlength=n_classes**2).reshape(n_classes, n_classes)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with the best epoch marked."""
    epochs = [r["epoch"] for r in rows]
    best = max(rows, key=lambda r: (r["val_acc"], -r["val_loss"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in [(axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")]:
        ax.plot(epochs, [r[f"train_{metric}"] for r in rows], "o-", ms=3, label="train")
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], "s-", ms=3, label="validation")
        ax.axvline(best["epoch"], color="grey", ls=":", label=f"best epoch ({best['epoch']})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_title(f"best val accuracy {best['val_acc']:.4f}")
    _save(fig, path)


def plot_confusion(matrix: Tensor, classes: Sequence[str], path: Path) -> None:
    """The confusion matrix with counts in the cells."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = int(matrix.max()) if matrix.numel() else 0
    for i in range(n):
        for j in range(n):
            v = int(matrix[i, j])
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    acc = float(matrix.diag().sum() / matrix.sum()) if matrix.sum() else 0.0
    ax.set_title(f"validation, accuracy {acc:.4f}")
    _save(fig, path)


def plot_predictions(
    paths: Sequence[Path],
    labels: Tensor,
    preds: Tensor,
    probs: Tensor,
    classes: Sequence[str],
    path: Path,
    load: Callable[[Path], Image.Image],
    n: int = 16,
) -> None:
    """A grid of validation images titled with the predicted class: green when right, red when wrong."""
    n = min(n, len(paths))
    # spread the grid over the whole split so every class shows up
    picks = [round(i * (len(paths) - 1) / max(n - 1, 1)) for i in range(n)]
    cols = 4
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        image = load(paths[i])
        image.thumbnail((256, 256))
        ax.imshow(image)
        right = int(preds[i]) == int(labels[i])
        ax.set_title(
            f"{classes[int(preds[i])]} ({float(probs[i, preds[i]]):.2f})",
            color="green" if right else "red", fontsize=11,
        )
    fig.suptitle("predicted class (probability) — green right, red wrong")
    _save(fig, path)


def epoch_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the per-epoch metrics."""
    head = f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} {'s':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['train_acc']:>9.4f} "
            f"{r['val_loss']:>9.4f} {r['val_acc']:>8.4f} {r['epoch_s']:>6.2f}"
        )
    return "\n".join(lines)
