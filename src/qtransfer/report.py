"""What a run leaves for people: curves, a prediction grid, a confusion matrix, a short table."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor

from .stats import pm


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


# ------------------------------------------------------------------------------------- comparisons


HELD_OUT_COLUMNS = {"accuracy": ("held_out_acc", "held-out test acc"),
                    "balanced_accuracy": ("held_out_balanced_acc", "held-out balanced acc"),
                    "roc_auc": ("held_out_roc_auc", "held-out ROC-AUC")}


def compare_table(heads: dict[str, dict[str, Any]], metrics: Sequence[str] = ("accuracy", "balanced_accuracy")) -> str:
    """Markdown table: one row per head, statistics over its seeds; the chosen held-out metrics when there was a
    test split, and the gap between selected-on and held-out accuracy."""
    held = [m for m in metrics if any(HELD_OUT_COLUMNS[m][0] in h for h in heads.values())]
    gap = any("held_out_acc" in h for h in heads.values())
    extra = "".join(f" | {HELD_OUT_COLUMNS[m][1]}" for m in held) + (" | gap (selected − held-out)" if gap else "")
    lines = [
        "| head | seeds | best val acc (selected on val) | min | max | final val acc | best val loss"
        + extra + " | trainable parameters | head training s |",
        "|---|---|---|---|---|---|---|" + "---|" * (len(held) + gap) + "---|---|",
    ]
    for label, h in heads.items():
        acc = h["best_val_acc"]
        cells = "".join(f" | {pm(h[HELD_OUT_COLUMNS[m][0]])}" for m in held)
        if gap:
            cells += f" | {acc['mean'] - h['held_out_acc']['mean']:+.4f}"
        lines.append(
            f"| `{label}` | {acc['n']} | {pm(acc)} | {acc['min']:.4f} | {acc['max']:.4f} "
            f"| {pm(h['final_val_acc'])} | {pm(h['best_val_loss'])}{cells} | {int(h['parameters']['mean'])} "
            f"| {h['train_s']['mean']:.2f} |"
        )
    return "\n".join(lines)


def paired_table(pairs: Sequence[dict[str, Any]]) -> str:
    """Markdown table of paired differences a − b over common seeds with bootstrap 95% intervals."""
    lines = ["| a − b | metric | seeds | mean difference | 95% bootstrap interval | a better / tie / worse |",
             "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(
            f"| `{p['a']}` − `{p['b']}` | {p['metric']} | {p['n']} | {p['mean']:+.4f} "
            f"| [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}] | {p['wins']} / {p['ties']} / {p['losses']} |"
        )
    return "\n".join(lines)


def compare_markdown(result: dict[str, Any]) -> str:
    """compare.md: the settings, the per-head table and the paired differences."""
    counts = result["counts"]
    text = [
        f"# Comparison of heads on {result['backbone']} features",
        "",
        f"Data `{result['data']}` ({counts['train']} train / {counts['val']} val images, classes "
        f"{', '.join(result['classes'])}); {result['epochs']} epochs; seeds {result['seeds']}"
        + (f"; {result['augment_views']} augmented views per training image" if result["augment_views"] else "")
        + ".",
        "",
        "\"Best val acc\" is the accuracy of the epoch selected on the validation split itself, as the reference"
        + " reports it: it is biased upward. \"Final\" is the last epoch's. \"Held-out\" accuracies (when the data"
        + " has a test split, or --holdout carves one) score the selected epoch on images never used to train or select.",
        "",
        compare_table(result["heads"], result.get("metrics", ("accuracy", "balanced_accuracy"))),
        "",
    ]
    if result["paired"]:
        text += ["## Paired differences over seeds", "", paired_table(result["paired"]), ""]
    return "\n".join(text)


def plot_compare(result: dict[str, Any], path: Path) -> None:
    """Per-seed best val accuracy with mean ± std per head, and the mean validation curves."""
    import numpy as np

    labels = list(result["heads"])
    by_label: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in result["runs"]:
        key = f"{r['label']}+aug{result['augment_views']}" if r["augmented"] else r["label"]
        by_label[key].append(r)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.3]})
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        color = colors[i % len(colors)]
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
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("validation accuracy")
    right.set_title(f"mean ± std over seeds {result['seeds']}")
    right.grid(alpha=0.3)
    right.legend(fontsize=9, loc="lower right")
    fig.suptitle(f"{result['backbone']} features, {result['epochs']} epochs")
    _save(fig, path)


def sweep_markdown(result: dict[str, Any]) -> str:
    """sweep.md: accuracy per depth and per qubit count, mean ± std over seeds."""
    ax = result["axes"]
    text = [
        f"# Circuit sweep on {result['backbone']} features",
        "",
        f"Data `{result['data']}`; {result['epochs']} epochs; seeds {result['seeds']}. Accuracies are the best "
        + "epoch's, selected on the validation split itself (biased upward), and the final epoch's.",
        "",
        f"## Depth ({ax['depth']['fixed']['qubits']} qubits; depth 0 keeps only the embedding)",
        "",
        "| depth | best val acc | final val acc | trainable parameters | head training s |",
        "|---|---|---|---|---|",
    ]
    for p in ax["depth"]["quantum"]:
        text.append(f"| {p['x']} | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} | {int(p['parameters'])} "
                    f"| {p['train_s']:.2f} |")
    for p in ax["depth"].get("classical", []):
        text.append(f"| classical head | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} "
                    f"| {int(p['parameters'])} | {p['train_s']:.2f} |")
    text += [
        "",
        f"## Qubits (depth {ax['qubits']['fixed']['depth']}; the classical head has the same width)",
        "",
        "| qubits | quantum best val acc | quantum final | classical best val acc | classical final "
        + "| parameters (quantum / classical) | head training s (quantum / classical) |",
        "|---|---|---|---|---|---|---|",
    ]
    classical = {p["x"]: p for p in ax["qubits"].get("classical", [])}
    for p in ax["qubits"]["quantum"]:
        c = classical.get(p["x"])
        cells = (f"{pm(c['best_val_acc'])} | {pm(c['final_val_acc'])}", f"{int(c['parameters'])}",
                 f"{c['train_s']:.2f}") if c else ("– | –", "–", "–")
        text.append(f"| {p['x']} | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} | {cells[0]} "
                    f"| {int(p['parameters'])} / {cells[1]} | {p['train_s']:.2f} / {cells[2]} |")
    return "\n".join(text) + "\n"


def plot_sweep(result: dict[str, Any], path: Path) -> None:
    """Best val accuracy against depth and against qubits: per-seed points, mean ± std, classical beside."""
    import numpy as np

    by_label: dict[str, list[float]] = {}
    for r in result["runs"]:
        by_label.setdefault(r["label"], []).append(r["best_val_acc"])
    ax_data = result["axes"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    styles = {"quantum": ("tab:blue", "o", "dressed quantum"), "classical": ("tab:orange", "s", "classical, same width")}
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="lower right")
    axes[0].set_ylabel("best val accuracy (selected on val)")
    fig.suptitle(f"{result['backbone']} features, {result['epochs']} epochs, seeds {result['seeds']}")
    _save(fig, path)
