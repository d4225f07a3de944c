"""Classification metrics of an evaluation (accuracy, balanced accuracy, per-class P/R/F1, ROC-AUC, also for more
than two classes), and the summary of a metric over repetitions. scikit-learn is imported when used."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "confusion")


def confusion(labels: Tensor, preds: Tensor, n_classes: int) -> Tensor:
    """Counts (true class, predicted class)."""
    return torch.bincount(labels * n_classes + preds, minlength=n_classes**2).reshape(n_classes, n_classes)


def roc_auc(labels: Tensor, scores: Tensor) -> float:
    """Area under the ROC curve of scores for class 1 (ties count half), by scikit-learn's roc_auc_score: memory
    linear in the number of scores (nan when one class is absent)."""
    from sklearn.metrics import roc_auc_score

    y = labels.numpy() == 1
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, scores.double().numpy()))


def roc_auc_ovr(labels: Tensor, probs: Tensor) -> float:
    """One-vs-rest ROC-AUC of class probabilities (N, classes), the macro average over classes, as scikit-learn's
    roc_auc_score(multi_class="ovr", average="macro"). A class absent from `labels` has no positives, so its AUC is
    undefined: it is left out of the average (nan when fewer than two classes are present)."""
    from sklearn.metrics import roc_auc_score

    y, p = labels.numpy(), probs.double().numpy()
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))


def classification_metrics(labels: Tensor, probs: Tensor, classes: Sequence[str | int]) -> dict[str, Any]:
    """Every metric of METRIC_NAMES for true labels and predicted class probabilities (N, classes), per class keyed
    by `classes` (names, or label numbers); ROC-AUC is one-vs-rest, macro-averaged over the classes present in
    `labels`, for more than two classes."""
    n = len(classes)
    preds = probs.argmax(1)
    matrix = confusion(labels, preds, n).double()
    support, predicted = matrix.sum(1), matrix.sum(0)
    recall = torch.where(support > 0, matrix.diag() / support.clamp_min(1), torch.nan)
    precision = torch.where(predicted > 0, matrix.diag() / predicted.clamp_min(1), torch.zeros(()).double())
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros(()).double())
    return {
        "accuracy": float(matrix.diag().sum() / matrix.sum()),
        "balanced_accuracy": float(recall.nanmean()),
        "precision": dict(zip(classes, precision.tolist())),
        "recall": dict(zip(classes, recall.tolist())),
        "f1": dict(zip(classes, f1.tolist())),
        "roc_auc": roc_auc(labels, probs[:, 1].double()) if n == 2 else roc_auc_ovr(labels, probs),
        "confusion": matrix.long().tolist(),
    }


def describe(values: Sequence[float]) -> dict[str, float]:
    """Count, mean, sample standard deviation (0 for one value), min and max."""
    v = np.asarray(values, dtype=float)
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
    }
