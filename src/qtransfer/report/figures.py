"""Figures a person would rather see than read: a run's curves, confusion matrix and predictions, comparisons and
sweeps. matplotlib is imported only when a figure is drawn, and through its object API: no global backend is
chosen and pyplot's state (a notebook's inline figures) is left alone; every file is written atomically."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from torch import Tensor

from qtransfer.storage import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def subplots(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure (not registered with pyplot) and its axes, as pyplot.subplots returns them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def save(fig: Figure, path: Path, dpi: int = 110, layout: bool = True) -> None:
    """Lay the figure out (unless `layout` is False: margins already set, which saves a drawing pass) and write it
    to `path` (format from the suffix) atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    # zlib level 1: a quarter of the time of the default level, and no larger for these figures
    options: dict[str, Any] = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    if layout:
        fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, **options))


def integer_ticks(axis: Any) -> None:
    """Only whole numbers on this axis (epochs, qubits, depths)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def colors() -> list[str]:
    """The default colour cycle."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]



def plot_curves(rows: Sequence[dict[str, Any]], best: dict[str, Any], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with the selected epoch `best` marked."""
    epochs = [r["epoch"] for r in rows]
    fig, axes = subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in [(axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")]:
        ax.plot(epochs, [r[f"train_{metric}"] for r in rows], "o-", ms=3, label="train")
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], "s-", ms=3, label="validation")
        ax.axvline(best["epoch"], color="grey", ls=":", label=f"best epoch ({best['epoch']})")
        ax.set_xlabel("epoch")
        integer_ticks(ax.xaxis)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_title(f"best val accuracy {best['val_acc']:.4f}")
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.13, top=0.92, wspace=0.22)
    save(fig, path, layout=False)


def plot_confusion(matrix: Tensor, classes: Sequence[str], path: Path) -> None:
    """The confusion matrix with counts in the cells."""
    n = len(classes)
    side = min(1.2 * n, 0.6 * n + 3)  # 10 classes: 9 inches, the counts still large beside their cells
    fig, ax = subplots(figsize=(side + 2.5, side + 2))
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
    save(fig, path)


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
    fig, axes = subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        image = load(paths[i])
        image.thumbnail((256, 256))
        ax.imshow(image)
        right = int(preds[i]) == int(labels[i])
        truth = "" if right else f", true {classes[int(labels[i])]}"
        ax.set_title(f"{classes[int(preds[i])]} ({float(probs[i, preds[i]]):.2f}){truth}",
                     color="green" if right else "red", fontsize=11)
    fig.suptitle("predicted class (probability) — green right, red wrong (with the true class)")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.6 / fig.get_figheight(), wspace=0.05,
                        hspace=0.25)
    save(fig, path, dpi=80, layout=False)  # 240-pixel cells: the 256-pixel thumbnails at about their own size


def plot_compare(result: dict[str, Any], path: Path) -> None:
    """Per-seed best val accuracy with mean ± std per head, and the mean validation curves."""
    import numpy as np

    labels = list(result["heads"])
    by_label: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in result["runs"]:
        key = f"{r['label']}+aug{result['augment_views']}" if r["augmented"] else r["label"]
        by_label[key].append(r)
    palette = colors()
    fig, (left, right) = subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.3]})
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        color = palette[i % len(palette)]
        best = [r["best_val_acc"] for r in by_label[label]]
        final = [r["final_val_acc"] for r in by_label[label]]
        left.scatter(i - 0.12 + rng.uniform(-0.05, 0.05, len(best)), best, color=color, s=22, zorder=3)
        left.scatter(i + 0.12 + rng.uniform(-0.05, 0.05, len(final)), final, facecolors="none", edgecolors=color,
                     s=22, zorder=3)
        left.errorbar(i - 0.12, np.mean(best), yerr=np.std(best, ddof=1) if len(best) > 1 else 0, fmt="_",
                      color="black", ms=18, capsize=4, zorder=4)
        curves = np.array([r["curves"]["val_acc"] for r in by_label[label]])
        epochs = np.arange(1, curves.shape[1] + 1)
        mean, std = curves.mean(0), curves.std(0)
        right.plot(epochs, mean, color=color, label=label)
        right.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.1)
    left.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    left.set_ylabel("validation accuracy")
    left.set_title("per seed: ● best epoch (selected on val), ○ final epoch\nbar: mean ± std of best")
    left.grid(alpha=0.3, axis="y")
    right.set_xlabel("epoch")
    integer_ticks(right.xaxis)
    right.set_ylabel("validation accuracy")
    right.set_title(f"mean ± std over seeds {result['seeds']}")
    right.grid(alpha=0.3)
    right.legend(fontsize=9, loc="lower right")
    fig.suptitle(f"{result['backbone']} features, {result['epochs']} epochs")
    save(fig, path)


def plot_sweep(result: dict[str, Any], path: Path) -> None:
    """Best val accuracy against depth and against qubits: per-seed points, mean ± std, classical beside."""
    import numpy as np

    by_label: dict[str, list[float]] = {}
    for r in result["runs"]:
        by_label.setdefault(r["label"], []).append(r["best_val_acc"])
    ax_data = result["axes"]
    fig, axes = subplots(1, 2, figsize=(12, 4.4), sharey=True)
    styles = {"quantum": ("tab:blue", "o", "dressed quantum"),
              "classical": ("tab:orange", "s", "classical, same width")}
    for ax, name, xlabel in ((axes[0], "depth", "variational layers (depth)"), (axes[1], "qubits", "qubits")):
        for kind, points in ax_data[name].items():
            if kind == "fixed":
                continue
            color, marker, label = styles[kind]
            if name == "depth" and kind == "classical":
                p = points[0]
                m, s = p["best_val_acc"]["mean"], p["best_val_acc"]["std"]
                ax.axhline(m, color=color, ls="--", label=f"{label} (mean ± std)")
                ax.axhspan(m - s, m + s, color=color, alpha=0.12)
                continue
            xs = np.array([p["x"] for p in points], dtype=float)
            offset = 0.12 if kind == "classical" else -0.12
            for x, p in zip(xs, points):
                seeds = by_label[p["label"]]
                ax.scatter(np.full(len(seeds), x + offset), seeds, color=color, s=10, alpha=0.45, zorder=2)
            means = [p["best_val_acc"]["mean"] for p in points]
            stds = [p["best_val_acc"]["std"] for p in points]
            ax.errorbar(xs + offset, means, yerr=stds, color=color, marker=marker, capsize=3, label=label, zorder=3)
        fixed = ", ".join(f"{k} {v}" for k, v in ax_data[name]["fixed"].items())
        ax.set_title(f"against {name} ({fixed})")
        ax.set_xlabel(xlabel)
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="lower right")
    axes[0].set_ylabel("best val accuracy (selected on val)")
    fig.suptitle(f"{result['backbone']} features, {result['epochs']} epochs, seeds {result['seeds']}")
    save(fig, path)


def plot_noise_scan(result: dict[str, Any], path: Path) -> None:
    """Accuracy against noise strength, and against shots (mean ± std over repetitions)."""
    fig, (left, right) = subplots(1, 2, figsize=(11, 4.2), sharey=True)
    rows = [r for r in result["noise"] if r["p"] > 0]
    readout = f", readout {result['readout']}" if result["readout"] else ""
    left.plot([r["p"] for r in rows], [r["accuracy"] for r in rows], "o-", color="tab:red",
              label=f"{result['channel']} after every gate{readout}")
    left.set_xscale("log")
    left.set_xlabel(f"{result['channel']} strength p")
    right.errorbar([r["shots"] for r in result["shots"]], [r["accuracy_mean"] for r in result["shots"]],
                   yerr=[r["accuracy_std"] for r in result["shots"]], fmt="o-", capsize=3, color="tab:blue",
                   label=f"mean ± std over {result['repeats']} repetitions")
    right.set_xscale("log", base=2)
    right.set_xlabel("shots per expectation value")
    for ax in (left, right):
        ax.axhline(result["exact_accuracy"], color="grey", ls="--", label="exact, noiseless")
        ax.axhline(0.5, color="grey", ls=":", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="lower left")
    left.set_ylabel(f"validation accuracy ({result['split_images']} images)")
    left.set_title("density-matrix simulation, exact expectation values")
    right.set_title("statevector, finite shots")
    save(fig, path)


def plot_critical_difference(
    ranks: dict[str, float], nemenyi_p: dict[str, dict[str, float]], path: Path, title: str,
    cd: float | None = None, alpha: float = 0.05,
) -> None:
    """Demšar's critical-difference diagram (scikit-posthocs): average ranks on an axis from 1 (best, left) to k,
    heads Nemenyi does not tell apart at `alpha` joined by a bar, and a bar as long as the CD above when given."""
    import pandas as pd
    import scikit_posthocs
    from matplotlib.transforms import offset_copy

    heads = list(ranks)
    k = len(heads)
    sig = pd.DataFrame([[nemenyi_p[a][b] for b in heads] for a in heads], index=heads, columns=heads)
    longest = max(len(h) for h in heads) + 7  # the label and its " (1.50)"
    fig, ax = subplots(figsize=(4 + 0.16 * longest, 1.9 + 0.36 * ((k + 1) // 2)))
    scikit_posthocs.critical_difference_diagram(
        pd.Series(ranks), sig, ax=ax, alpha=alpha, text_h_margin=0.02 + 0.02 * (k - 1),
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}")
    pad = 0.04 * (k - 1)  # the end markers whole
    ax.set_xlim(1 - pad, max(k, 1 + (cd or 0)) + pad)
    ax.set_xticks(range(1, k + 1))
    ax.set_xlabel("average rank (1 = best)")
    ax.xaxis.set_label_position("top")
    above = 50
    if cd is not None:  # drawn here: scikit-posthocs writes the CD with two significant digits, over the ticks
        bar = offset_copy(ax.transData, fig=fig, y=above - 6, units="points")
        ax.plot([1, 1 + cd], [0, 0], color="black", lw=2, transform=bar, clip_on=False)
        ax.plot([1, 1], [0, 0], "|", color="black", ms=8, transform=bar, clip_on=False)
        ax.plot([1 + cd, 1 + cd], [0, 0], "|", color="black", ms=8, transform=bar, clip_on=False)
        ax.text(1 + cd / 2, 0, f"CD = {cd:.2f} (α = {alpha:g})", ha="center", va="bottom", transform=offset_copy(
            ax.transData, fig=fig, y=above - 3, units="points"))
    ax.set_title(title, pad=above + 12 if cd is not None else 30)
    fig.tight_layout(pad=1.5)  # the longest labels reach the figure's edges otherwise
    save(fig, path, layout=False)
