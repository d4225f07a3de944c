"""Heads fitted in one call on the training features (scikit-learn, hyper-parameters by inner cross-validation)
and then applied by torch, so they evaluate, checkpoint and predict like every other head."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer.errors import InputError
from qtransfer.runtime import free_cores

INNER_FOLDS = 5


class FittedModule(nn.Module):
    """A module whose tensors are set by fitting, not by gradient steps: it keeps them in buffers of any shape
    (loading a state dict resizes them, so a fresh instance loads a fitted one)."""

    def fitted_buffer(self, name: str, value: Any) -> None:
        """Register or replace buffer `name` with `value` (array or tensor), as float64 unless integral."""
        t = torch.as_tensor(np.asarray(value))
        t = t if not t.is_floating_point() else t.double()
        self.register_buffer(name, t.to(self._device()))

    def _device(self) -> torch.device:
        return next((b.device for b in self.buffers()), torch.device("cpu"))

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        for name, buffer in list(self._buffers.items()):
            key = prefix + name
            if key in state_dict and buffer is not None:
                self._buffers[name] = torch.empty_like(state_dict[key], device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args)


class FittedHead(FittedModule):
    """A head whose `fit` sets its tensors from the training split at once; training loops call it instead of
    running epochs. Subclasses keep every fitted value in buffers, and `forward` returns logits whose softmax
    are the class probabilities. The chosen hyper-parameters travel in the state dict (as extra state)."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {}  # the values its inner cross-validation chooses among

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.choices: dict[str, Any] = {}  # the hyper-parameters the inner cross-validation chose
        self.fixed: dict[str, Any] = {}  # hyper-parameters set from outside (by `cv --tune`), not searched

    def fix(self, values: Mapping[str, Any]) -> None:
        """Fit with these values of the search space instead of searching them."""
        unknown = set(values) - set(self.SEARCH)
        if unknown:
            raise InputError(f"{type(self).__name__} has no hyper-parameter(s) {sorted(unknown)}; its search space: "
                             f"{', '.join(self.SEARCH)}")
        self.fixed = dict(values)

    def search(self) -> dict[str, tuple[Any, ...]]:
        """The search space, with fixed hyper-parameters narrowed to their one value."""
        return {k: (self.fixed[k],) if k in self.fixed else v for k, v in self.SEARCH.items()}

    def fit(self, features: Tensor, labels: Tensor, seed: int) -> dict[str, Any]:
        """Fit on (features, labels); returns and keeps the chosen hyper-parameters."""
        raise NotImplementedError

    def get_extra_state(self) -> dict[str, Any]:
        """What the state dict keeps beside the buffers: the chosen hyper-parameters."""
        return {"choices": dict(self.choices)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the chosen hyper-parameters from a state dict."""
        self.choices = dict(state["choices"])


def training_arrays(features: Tensor, labels: Tensor, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(features as float64, labels as int64) on the CPU, checked: one label per row, every class present."""
    x = features.detach().cpu().double().numpy()
    y = labels.detach().cpu().numpy().astype(np.int64)
    if x.ndim != 2 or y.shape != (len(x),):
        raise InputError(f"a fitted head needs features of shape (samples, features) and one label per sample; "
                         f"got features {tuple(x.shape)} and labels {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(f"labels must lie in 0..{n_classes - 1} (n_classes={n_classes}); got {y.min()}..{y.max()}")
    missing = [c for c in range(n_classes) if not np.any(y == c)]
    if missing:
        raise InputError(f"a fitted head needs training samples of every class; class(es) {missing} have none: "
                         f"use a split that holds every class")
    return x, y


def inner_cv(estimator: Any, grid: Mapping[str, Sequence[Any]], x: np.ndarray, y: np.ndarray, seed: int,
             folds: int = INNER_FOLDS) -> tuple[Any, dict[str, Any]]:
    """The estimator refitted on all of (x, y) with the grid point of best mean accuracy over stratified, seeded
    inner folds (fewer folds when a class has fewer samples); returns it and the chosen values."""
    search = grid_search(estimator, grid, x, y, seed, folds)
    return search.best_estimator_, {k: _plain(v) for k, v in search.best_params_.items()}


def grid_search(estimator: Any, grid: Mapping[str, Sequence[Any]], x: np.ndarray, y: np.ndarray, seed: int,
                folds: int = INNER_FOLDS, scored: bool = False) -> Any:
    """inner_cv's fitted GridSearchCV (best_estimator_, best_params_, best_score_, cv_results_). A grid of one point
    is fitted once without inner folds (best_score_ NaN), unless `scored`: its score is compared with others'."""
    from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold

    if len(ParameterGrid(dict(grid))) == 1 and not scored:  # nothing to choose: one fit on all rows
        return _Single(estimator, next(iter(ParameterGrid(dict(grid)))), x, y)
    present = np.bincount(y)[np.bincount(y) > 0]
    smallest = int(present.min()) if present.size else 0
    if smallest < 2:
        raise InputError(f"a fitted head needs at least 2 training samples of every class for its inner "
                         f"cross-validation; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    # the grid's fits in parallel processes (one thread each) only where cores are free: beside a busy process a
    # second worker would only wait for it
    workers = min(free_cores(), splitter.get_n_splits() * len(ParameterGrid(dict(grid))))
    search = GridSearchCV(estimator, dict(grid), cv=splitter, scoring="accuracy", n_jobs=workers, refit=True)
    return search.fit(x, y)


class _Single:
    """What a GridSearchCV of one grid point leaves, without its inner folds (no score to compare)."""

    def __init__(self, estimator: Any, params: dict[str, Any], x: np.ndarray, y: np.ndarray):
        from sklearn.base import clone

        self.best_params_ = params
        self.best_estimator_ = clone(estimator).set_params(**params).fit(x, y)
        self.best_score_ = float("nan")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
