"""Honest splits: stratified, seeded held-out sets and cross-validation folds, by index."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def _by_class(labels: Sequence[int], seed: int) -> dict[int, list[int]]:
    """Indices of each class, shuffled by the seed."""
    g = torch.Generator().manual_seed(seed)
    out: dict[int, list[int]] = {}
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        out[c] = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
    return out


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held out): `fraction` of every class held out (at least one per class), the rest kept."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    kept, held = [], []
    for c, idx in _by_class(labels, seed).items():
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        if k < 1:
            raise ValueError(f"class {c} has {len(idx)} sample(s); holding some out needs at least 2")
        held += idx[:k]
        kept += idx[k:]
    return sorted(kept), sorted(held)


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """`folds` disjoint index lists covering every sample, each with about 1/folds of every class."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    small = {c: len(idx) for c, idx in _by_class(labels, seed).items() if len(idx) < folds}
    if small:
        raise ValueError(f"{folds} folds need at least {folds} samples of every class; too few: {small}")
    out: list[list[int]] = [[] for _ in range(folds)]
    offset = 0
    for idx in _by_class(labels, seed).values():
        for j, i in enumerate(idx):
            out[(j + offset) % folds].append(i)
        offset += len(idx)  # the next class starts where this one stopped, so fold sizes stay even
    return [sorted(f) for f in out]
