"""Summaries over seeds: mean, spread, and bootstrap intervals of paired differences."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qtransfer.errors import InputError
from qtransfer.training.metrics import describe

__all__ = ["bootstrap_mean_ci", "describe", "paired_difference"]


def bootstrap_mean_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, float]:
    """Mean of a − b over paired samples (same seeds), with a 95% bootstrap interval."""
    if len(a) != len(b) or not a:
        raise InputError(f"paired difference needs equal, non-empty samples; got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    low, high = bootstrap_mean_ci(d, seed=seed)
    return {"n": int(d.size), "mean": float(d.mean()), "ci95_low": low, "ci95_high": high,
            "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
