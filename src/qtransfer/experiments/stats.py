"""Statistics for few paired observations (seeds, folds): t-intervals, the exact sign-flip test, the effect size
d_z, and a bootstrap interval only where there are enough observations for it; the benchmarking protocol over
cross-validation folds (Nadeau-Bengio-corrected differences, TOST equivalence, Holm's adjustment, verdicts, Friedman
and Nemenyi ranks, the scorecard). scipy, statsmodels and scikit-posthocs are imported when used."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qtransfer.errors import InputError
from qtransfer.training.metrics import describe

__all__ = ["BOOTSTRAP_MIN_N", "EXACT_MAX_N", "MONTE_CARLO_RESAMPLES", "VERDICTS", "bootstrap_mean_ci",
           "corrected_resampled_t", "describe", "effect_size_dz", "friedman_nemenyi", "holm", "paired_difference",
           "scorecard", "sign_flip_test", "t_interval", "tost_corrected", "verdict"]

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


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order; NaN entries stay NaN and are not counted."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    known = ~np.isnan(p)
    if known.any():
        adjusted[known] = multipletests(p[known], method="holm")[1]
    return [float(x) for x in adjusted]


def tost_corrected(
    d: Sequence[float], n_train: int, n_test: int, margin: float = 0.01, level: float = 0.95
) -> dict[str, float]:
    """Two one-sided tests (TOST) that the mean fold difference lies within ±margin, with the Nadeau-Bengio
    corrected standard error and J − 1 degrees of freedom: p is the larger one-sided p-value, and (low90,
    high90) the corrected 1 − 2α interval (α = 1 − level: 90% at the default), inside ±margin exactly when p < α.
    Fewer than two differences (or n_train < 1): NaN. All differences equal: p = 0 when their mean is strictly
    inside ±margin, else 1. n_test = 0 removes the correction (the plain paired TOST)."""
    # statsmodels' ttost_paired / ttost_ind take the plain variance s²/J; none takes the corrected
    # (1/J + n_test/n_train) s², so the two one-sided t-tests are written here on scipy's t distribution.
    from scipy import stats

    v = np.asarray(d, dtype=float)
    out = {"p": math.nan, "p_lower": math.nan, "p_upper": math.nan, "low90": math.nan, "high90": math.nan,
           "margin": float(margin), "mean": float(v.mean()) if v.size else math.nan, "se": math.nan,
           "df": max(int(v.size) - 1, 0), "n": int(v.size)}
    if v.size < 2 or n_train < 1:
        return out
    mean, df = float(v.mean()), v.size - 1
    se = math.sqrt((1 / v.size + n_test / n_train) * float(v.var(ddof=1)))
    alpha = 1 - level
    if se > 0:
        p_lower = float(stats.t.sf((mean + margin) / se, df))  # H0: mean <= -margin
        p_upper = float(stats.t.cdf((mean - margin) / se, df))  # H0: mean >= +margin
        half = float(stats.t.ppf(1 - alpha, df)) * se
    else:
        p_lower, p_upper, half = float(mean <= -margin), float(mean >= margin), 0.0
    return {**out, "p": max(p_lower, p_upper), "p_lower": p_lower, "p_upper": p_upper, "low90": mean - half,
            "high90": mean + half, "se": se}


VERDICTS = ("better", "worse", "equivalent", "inconclusive")


def verdict(mean: float, p_difference: float, p_equivalence: float, alpha: float = 0.05) -> str:
    """'equivalent' when the (Holm-adjusted) TOST p < alpha, even if the difference is also significant (it then
    lies within the margin); else 'better' or 'worse' by the sign of `mean` when the (Holm-adjusted) difference
    p < alpha; else 'inconclusive' (NaN p-values count as not significant)."""
    if p_equivalence < alpha:
        return "equivalent"
    if p_difference < alpha and mean != 0:
        return "better" if mean > 0 else "worse"
    return "inconclusive"


def friedman_nemenyi(
    scores: Mapping[str, Sequence[float]], higher_is_better: bool = True, alpha: float = 0.05
) -> dict[str, Any]:
    """Friedman's test over blocks (folds or datasets) × heads, each head's average rank (1 = best, ties
    averaged), Nemenyi's pairwise p-values and Demšar's critical difference CD = q_α·sqrt(k(k+1)/(6N)) at `alpha`
    (k heads, N blocks). Statistic and p are NaN when every block ties all heads."""
    import warnings

    import scikit_posthocs
    from scipy import stats

    heads = list(scores)
    if len(heads) < 3:
        raise InputError(f"Friedman's test needs at least 3 heads, got {len(heads)} ({', '.join(heads)}); "
                         "compare two heads with their paired fold differences instead")
    lengths = {len(scores[h]) for h in heads}
    if len(lengths) != 1:
        raise InputError("Friedman's test needs every head scored on the same blocks; got "
                         + ", ".join(f"{h}: {len(scores[h])}" for h in heads))
    table = np.array([np.asarray(scores[h], dtype=float) for h in heads]).T  # blocks × heads
    n = table.shape[0]
    if n < 2:
        raise InputError(f"Friedman's test needs at least 2 blocks (folds or datasets), got {n}")
    if np.isnan(table).any():
        raise InputError("Friedman's test needs a score for every head in every block; some are NaN "
                         "(drop the block or the head that has none)")
    with warnings.catch_warnings():  # every block tied: scipy divides 0 by 0 and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        statistic, p = stats.friedmanchisquare(*table.T)
    ranks = stats.rankdata(-table if higher_is_better else table, axis=1).mean(axis=0)
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(table)  # labelled by column index
    k = len(heads)
    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return {"heads": heads, "blocks": int(n), "statistic": float(statistic), "p": float(p),
            "average_ranks": {h: float(r) for h, r in zip(heads, ranks)},
            "nemenyi_p": {a: {b: float(nemenyi.loc[i, j]) for j, b in enumerate(heads)} for i, a in enumerate(heads)},
            "cd": q * math.sqrt(k * (k + 1) / (6 * n)), "q_alpha": q, "alpha": alpha,
            "higher_is_better": higher_is_better}


def scorecard(
    per_fold: Mapping[str, Sequence[float]], reference: str, n_train: int, n_test: int, margin: float = 0.01,
    alpha: float = 0.05, seeds: int = 1, bounds: tuple[float, float] | None = (0.0, 1.0),
) -> dict[str, Any]:
    """Every head against `reference` on the same outer folds (per-fold scores, seeds already averaged, folds in
    the same order for every head): mean, sd and 95% t-interval (clipped to `bounds`) per head; per difference
    head − reference its mean, Nadeau-Bengio-corrected 95% interval and p, d_z and TOST p within ±margin; Holm over
    the table's difference p-values and, apart, over its TOST p-values; the verdict from the adjusted ones; and
    Friedman + Nemenyi over all heads when there are at least 3 (and 2 folds)."""
    if reference not in per_fold:
        raise InputError(f"the reference head {reference!r} has no scores; heads: {', '.join(per_fold)}")
    ref = np.asarray(per_fold[reference], dtype=float)
    for head, values in per_fold.items():
        if len(values) != ref.size:
            raise InputError(f"head {head!r} has {len(values)} fold scores and the reference {reference!r} "
                             f"{ref.size}; a scorecard pairs them fold by fold, so score every head on the same folds")
    rows = []
    for head, values in per_fold.items():
        v = np.asarray(values, dtype=float)
        low, high = t_interval(values, bounds=bounds)
        row: dict[str, Any] = {"head": head, "reference": head == reference, "n": int(v.size), "seeds": seeds,
                               "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                               "ci95": [low, high], "delta": None}
        if head != reference:
            d = v - ref
            t = corrected_resampled_t(d, n_train, n_test)
            tost = tost_corrected(d, n_train, n_test, margin=margin)
            row["delta"] = {"mean": float(d.mean()), "low": t["low"], "high": t["high"], "t": t["t"], "p": t["p"],
                            "d_z": effect_size_dz(d), "tost_p": tost["p"], "tost_low90": tost["low90"],
                            "tost_high90": tost["high90"]}
        rows.append(row)
    compared = [r["delta"] for r in rows if r["delta"] is not None]
    for delta, p, tost_p in zip(compared, holm([c["p"] for c in compared]), holm([c["tost_p"] for c in compared])):
        delta.update(p_holm=p, tost_p_holm=tost_p, verdict=verdict(delta["mean"], p, tost_p, alpha))
    ranked = len(per_fold) >= 3 and ref.size >= 2
    return {"reference": reference, "margin": margin, "alpha": alpha, "level": 0.95, "n_train": n_train,
            "n_test": n_test, "folds": int(ref.size), "seeds": seeds, "rows": rows,
            "friedman": friedman_nemenyi(per_fold, alpha=alpha) if ranked else None}
