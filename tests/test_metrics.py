"""Classification metrics for ten classes equal scikit-learn's, also when a class is missing from the labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from qtransfer.training.metrics import classification_metrics, roc_auc_ovr

CLASSES = [str(c) for c in range(10)]


def _random_evaluation(seed: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and softmax probabilities that lean towards the true class, so the metrics are not all at chance."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    logits = torch.randn(n, 10, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, 10)
    return labels, logits.softmax(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ten_class_metrics_equal_scikit_learns(seed: int) -> None:
    labels, probs = _random_evaluation(seed)
    m = classification_metrics(labels, probs, CLASSES)
    y, pred = labels.numpy(), probs.argmax(1).numpy()
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    precision, recall, f1, _ = sk.precision_recall_fscore_support(y, pred, labels=range(10), zero_division=0)
    assert list(m["precision"].values()) == pytest.approx(precision)
    assert list(m["recall"].values()) == pytest.approx(recall)
    assert list(m["f1"].values()) == pytest.approx(f1)
    assert m["confusion"] == sk.confusion_matrix(y, pred, labels=range(10)).tolist()
    expected = sk.roc_auc_score(y, probs.double().numpy(), multi_class="ovr", average="macro")
    assert m["roc_auc"] == pytest.approx(expected, abs=1e-12) and 0.6 < expected < 1.0


def test_a_class_absent_from_the_labels_is_left_out_of_the_roc_auc_average() -> None:
    labels, probs = _random_evaluation(3)
    keep = labels != 7
    labels, probs = labels[keep], probs[keep]
    y, p = labels.numpy(), probs.double().numpy()
    with pytest.raises(ValueError):  # scikit-learn refuses; we average over the nine classes present
        sk.roc_auc_score(y, p, multi_class="ovr", average="macro")
    present = [c for c in range(10) if c != 7]
    expected = np.mean([sk.roc_auc_score(y == c, p[:, c]) for c in present])
    assert classification_metrics(labels, probs, CLASSES)["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(roc_auc_ovr(torch.zeros(5, dtype=torch.long), torch.full((5, 10), 0.1)))


def test_two_classes_keep_the_binary_roc_auc_which_is_the_one_vs_rest_average() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (50,), generator=g)
    probs = (torch.randn(50, 2, generator=g) + torch.nn.functional.one_hot(labels, 2)).softmax(1)
    expected = sk.roc_auc_score(labels.numpy(), probs[:, 1].double().numpy())
    assert classification_metrics(labels, probs, ["a", "b"])["roc_auc"] == pytest.approx(expected)
    assert roc_auc_ovr(labels, probs) == pytest.approx(expected)


def test_binary_roc_auc_of_a_million_scores_takes_memory_linear_in_them() -> None:
    import tracemalloc

    from scipy.stats import rankdata

    from qtransfer.training.metrics import roc_auc

    g = torch.Generator().manual_seed(1)
    n = 10**6
    labels = torch.randint(0, 2, (n,), generator=g)
    scores = ((torch.randn(n, generator=g) + 0.5 * labels) * 100).round() / 100  # many ties
    tracemalloc.start()
    try:
        auc = roc_auc(labels, scores)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the Mann-Whitney statistic by ranks (ties share their mean rank): an independent computation
    y, s = labels.numpy() == 1, scores.double().numpy()
    pos, neg = int(y.sum()), int((~y).sum())
    expected = (rankdata(s)[y].sum() - pos * (pos + 1) / 2) / (pos * neg)
    assert auc == pytest.approx(expected, abs=1e-9) and 0.6 < auc < 0.7
    assert peak < 200 * 2**20  # comparing every positive with every negative held 250 GB of booleans
    assert np.isnan(roc_auc(torch.ones(4, dtype=torch.long), torch.rand(4)))
