"""The paper's 2-D two-spirals data: two interleaved spirals, split into train and test, standardised."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError


def make_spirals(turns: float, n_points: int = 2200, noise: float = 0.2, seed: int = 21) -> tuple[Tensor, Tensor]:
    """Two interleaved spirals as in the paper's notebook: class 1 is class 0 reflected through the origin."""
    if n_points < 2 or n_points % 2:
        raise InputError(f"n_points must be a positive even number (half per class), got {n_points}")
    n = n_points // 2
    rng = np.random.RandomState(seed)
    t = np.sqrt(rng.rand(n, 1)) * turns * (2 * np.pi)
    x = -np.cos(t) * t + rng.rand(n, 1) * noise
    y = np.sin(t) * t + rng.rand(n, 1) * noise
    points = np.vstack([np.hstack([x, y]), np.hstack([-x, -y])])
    labels = np.hstack([np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)])
    return torch.from_numpy(points), torch.from_numpy(labels)


@dataclass
class SpiralsData:
    """A standardised, stratified train/test split of one spirals dataset."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    turns: float
    mean: Tensor
    std: Tensor

    def standardise(self, points: Tensor) -> Tensor:
        """Raw spiral coordinates to the standardised ones the models see."""
        return ((points - self.mean) / self.std).float()


def spirals_dataset(
    turns: float, n_train: int = 2000, n_test: int = 200, noise: float = 0.2, seed: int = 21
) -> SpiralsData:
    """Spirals split into n_train / n_test points with equal classes in each, standardised on train."""
    if n_train % 2 or n_test % 2 or n_train <= 0 or n_test <= 0:
        raise InputError(f"n_train and n_test must be positive and even (equal classes), got {n_train}, {n_test}")
    points, labels = make_spirals(turns, n_train + n_test, noise, seed)
    # a different generator from the data's, so the split is not correlated with the draws of t
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels.numpy() == c))
        test_idx.append(idx[: n_test // 2])
        train_idx.append(idx[n_test // 2 :])
    train = torch.from_numpy(rng.permutation(np.concatenate(train_idx)))
    test = torch.from_numpy(rng.permutation(np.concatenate(test_idx)))
    mean = points[train].mean(0)
    std = points[train].std(0, unbiased=False)
    return SpiralsData(
        train_x=((points[train] - mean) / std).float(),
        train_y=labels[train],
        test_x=((points[test] - mean) / std).float(),
        test_y=labels[test],
        turns=turns,
        mean=mean,
        std=std,
    )
