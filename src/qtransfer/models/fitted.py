"""Heads fitted in one call on the training features (scikit-learn, hyper-parameters by inner cross-validation)
and then applied by torch, so they evaluate, checkpoint and predict like every other head."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer.errors import InputError

INNER_FOLDS = 5


class FittedHead(nn.Module):
    """A head whose `fit` sets its tensors from the training split at once; training loops call it instead of
    running epochs. Subclasses keep every fitted value in buffers (any shape: loading a state dict resizes them),
    and `forward` returns logits whose softmax are the class probabilities."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.choices: dict[str, Any] = {}  # the hyper-parameters the inner cross-validation chose

    def fit(self, features: Tensor, labels: Tensor, seed: int) -> dict[str, Any]:
        """Fit on (features, labels); returns and keeps the chosen hyper-parameters."""
        raise NotImplementedError

    def fitted_buffer(self, name: str, value: Any) -> None:
        """Register or replace buffer `name` with `value` (array or tensor), as float64 unless integral."""
        t = torch.as_tensor(np.asarray(value))
        t = t if not t.is_floating_point() else t.double()
        self.register_buffer(name, t.to(self._device()))

    def _device(self) -> torch.device:
        return next((b.device for b in self.buffers()), torch.device("cpu"))

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        for name in list(self._buffers):
            key = prefix + name
            if key in state_dict and self._buffers[name] is not None:
                self._buffers[name] = torch.empty_like(state_dict[key], device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args)


def inner_cv(estimator: Any, grid: Mapping[str, Sequence[Any]], x: np.ndarray, y: np.ndarray, seed: int,
             folds: int = INNER_FOLDS) -> tuple[Any, dict[str, Any]]:
    """The estimator refitted on all of (x, y) with the grid point of best mean accuracy over stratified, seeded
    inner folds (fewer folds when a class has fewer samples); returns it and the chosen values."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    present = np.bincount(y)[np.bincount(y) > 0]
    smallest = int(present.min()) if present.size else 0
    if smallest < 2:
        raise InputError(f"a fitted head needs at least 2 training samples of every class for its inner "
                         f"cross-validation; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    search = GridSearchCV(estimator, dict(grid), cv=splitter, scoring="accuracy", n_jobs=1, refit=True)
    search.fit(x, y)
    return search.best_estimator_, {k: _plain(v) for k, v in search.best_params_.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
