"""Statistics for few paired observations (seeds, folds): t-intervals, the exact sign-flip test, the effect size
d_z, and a bootstrap interval only where there are enough observations for it. scipy is imported when used."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qtransfer.errors import InputError
from qtransfer.training.metrics import describe

__all__ = ["BOOTSTRAP_MIN_N", "EXACT_MAX_N", "MONTE_CARLO_RESAMPLES", "bootstrap_mean_ci", "corrected_resampled_t",
           "describe",
           "paired_difference", "sign_flip_test", "t_interval"]

# The percentile bootstrap interval of a mean covers less than its level on few observations (about 80-85% for
# a 95% interval at n = 5): below this many it is not reported, and the t-interval and the exact test stand.
BOOTSTRAP_MIN_N = 20
# The sign-flip test enumerates all 2^n sign vectors up to this n (2^16 take scipy about 0.5 s, 2^20 about 20 s);
# beyond, it draws MONTE_CARLO_RESAMPLES of them at random.
EXACT_MAX_N = 16
MONTE_CARLO_RESAMPLES = 100_000


def t_interval(
    values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Student's t interval of the mean of `values`, clipped to `bounds`; (nan, nan) for fewer than two values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return math.nan, math.nan
    mean = float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = float(np.clip(low, *bounds)), float(np.clip(high, *bounds))
    return low, high


def sign_flip_test(
    a: Sequence[float], b: Sequence[float], seed: int = 0, exact_max_n: int = EXACT_MAX_N,
    resamples: int = MONTE_CARLO_RESAMPLES,
) -> dict[str, Any]:
    """Two-sided permutation p-value of the mean of a − b, swapping a and b within pairs (flipping the signs of
    the differences): all 2^n swaps when n <= exact_max_n, else `resamples` seeded random ones."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 1:  # both signs of one difference lie equally far from 0
        return {"p": 1.0, "method": "exact", "resamples": 2}
    exact = x.size <= exact_max_n or 2**x.size <= resamples
    result = stats.permutation_test(
        (x, y), _mean_difference, permutation_type="samples", vectorized=True,
        n_resamples=2**x.size if exact else resamples, batch=1 << 15, random_state=seed,
    )
    # A Monte-Carlo p-value counts the observed split among the draws: (hits + 1) / (resamples + 1).
    return {"p": float(result.pvalue), "method": "exact" if exact else "monte-carlo",
            "resamples": 2**x.size if exact else resamples}


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def bootstrap_mean_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (scipy.stats.bootstrap)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    ci = stats.bootstrap((v,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
                         vectorized=True, random_state=seed).confidence_interval
    return float(ci.low), float(ci.high)


def corrected_resampled_t(d: Sequence[float], n_train: int, n_test: int, level: float = 0.95) -> dict[str, float]:
    """Nadeau and Bengio's (2003) corrected resampled t-test of differences measured on the folds of repeated
    cross-validation: their variance s² is inflated to (1/J + n_test/n_train) s², because the folds' training sets
    overlap and the J differences are not independent. Returns the interval, t and the two-sided p-value."""
    from scipy import stats

    v = np.asarray(d, dtype=float)
    if v.size < 2 or n_train < 1:
        return {"low": math.nan, "high": math.nan, "t": math.nan, "p": math.nan}
    se = math.sqrt((1 / v.size + n_test / n_train) * float(v.var(ddof=1)))
    mean, q = float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1))
    t = mean / se if se > 0 else (math.nan if mean == 0 else math.copysign(math.inf, mean))
    p = float(2 * stats.t.sf(abs(t), v.size - 1)) if math.isfinite(t) else (math.nan if math.isnan(t) else 0.0)
    return {"low": mean - q * se, "high": mean + q * se, "t": t, "p": p, "n_train": n_train, "n_test": n_test}


def effect_size_dz(d: Sequence[float]) -> float:
    """Cohen's d_z: mean / sample standard deviation of paired differences (±inf when they are all equal and
    not zero, nan when all zero or fewer than two)."""
    v = np.asarray(d, dtype=float)
    if v.size < 2:
        return math.nan
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    if sd <= 1e-12 * float(np.abs(v).max()):  # equal up to rounding (0.9 − 0.8 and 0.8 − 0.7 differ in binary)
        return math.nan if mean == 0 else math.copysign(math.inf, mean)
    return mean / sd


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Mean of a − b over n paired observations (same seeds), with its 95% t-interval (ci95_low, ci95_high), the
    sign-flip p-value (p_sign_flip, by p_method over p_resamples sign vectors), d_z, wins / ties / losses, and
    bootstrap_ci95 only for n >= BOOTSTRAP_MIN_N (else None)."""
    if len(a) != len(b) or not len(a):
        raise InputError(f"paired difference needs equal, non-empty samples; got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    low, high = t_interval(d)
    test = sign_flip_test(a, b, seed)
    bootstrap = list(bootstrap_mean_ci(d, seed=seed)) if d.size >= BOOTSTRAP_MIN_N else None
    return {"n": int(d.size), "mean": float(d.mean()), "sd": float(d.std(ddof=1)) if d.size > 1 else math.nan,
            "ci95_low": low, "ci95_high": high, "interval": "t",
            "p_sign_flip": test["p"], "p_method": test["method"], "p_resamples": test["resamples"],
            "d_z": effect_size_dz(d), "bootstrap_ci95": bootstrap,
            "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
