"""Statistics for few paired seeds: the sign-flip test against brute force, t-intervals and d_z against scipy."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from qtransfer.experiments.stats import (
    BOOTSTRAP_MIN_N,
    EXACT_MAX_N,
    corrected_resampled_t,
    effect_size_dz,
    paired_difference,
    sign_flip_test,
    t_interval,
)


def brute_force_p(d: np.ndarray) -> float:
    """Share of all 2^n sign vectors whose mean difference is at least as far from 0 as the observed one."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    return float(np.mean(np.abs((signs * d).mean(axis=1)) >= abs(d.mean()) - 1e-12))


DIFFERENCES = [
    [0.02],
    [0.01, 0.03],
    [0.0, 0.0, 0.0],  # all zero: p = 1
    [0.05, 0.05, 0.05, 0.05],  # all equal: the smallest p there is, 2 / 2^4
    [0.05, -0.05, 0.05, 0.05, 0.05],  # ties in |d|, opposite signs
    [0.0, 0.02, 0.0, 0.04, -0.01, 0.03],  # zero differences among others
    [3 / 153, 1 / 153, 0.0, -1 / 153, 4 / 153, 2 / 153, 2 / 153],  # accuracies on 153 images
    [0.012, -0.004, 0.031, 0.007, 0.0, 0.019, -0.011, 0.025, 0.006, 0.014],
]


@pytest.mark.parametrize("d", DIFFERENCES)
def test_sign_flip_p_values_equal_the_enumeration_of_every_sign_vector(d: list[float]) -> None:
    b = np.linspace(0.6, 0.9, len(d))  # the test sees pairs (a, b), not their differences
    test = sign_flip_test(b + np.array(d), b)
    assert test["method"] == "exact" and test["resamples"] == 2 ** len(d)
    assert test["p"] == pytest.approx(brute_force_p(np.array(d)), abs=1e-12)


def test_known_sign_flip_p_values() -> None:
    assert sign_flip_test([0.9] * 5, [0.8] * 5)["p"] == pytest.approx(2 / 32)
    assert sign_flip_test([0.8] * 5, [0.8] * 5)["p"] == 1.0
    # differences ±0.1, four up and one down: |sum of flipped signs| >= 3 for 12 of the 32 sign vectors
    assert sign_flip_test([0.9, 0.9, 0.9, 0.9, 0.7], [0.8] * 5)["p"] == pytest.approx(12 / 32)


def test_the_monte_carlo_branch_is_reproducible_from_its_seed_and_near_the_exact_value() -> None:
    rng = np.random.default_rng(1)
    b = rng.uniform(0.7, 0.9, 15)
    a = b + rng.normal(0.01, 0.02, 15)
    exact = brute_force_p(a - b)  # over 2^15 sign vectors, more than the 20,000 drawn
    runs = [sign_flip_test(a, b, seed=s, exact_max_n=4, resamples=20_000) for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0]["p"] != runs[2]["p"]
    assert runs[0]["method"] == "monte-carlo" and runs[0]["resamples"] == 20_000
    for r in runs:
        assert abs(r["p"] - exact) < 4 * math.sqrt(exact * (1 - exact) / 20_000) + 1e-4


def test_t_interval_equals_scipys() -> None:
    for values in ([0.9, 0.92, 0.94], [0.81, 0.86, 0.79, 0.9, 0.84], list(np.linspace(0.1, 0.5, 31))):
        v = np.asarray(values)
        expected = stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=stats.sem(v))
        assert t_interval(values) == pytest.approx(expected, abs=1e-12)
        expected90 = stats.t.interval(0.9, v.size - 1, loc=v.mean(), scale=stats.sem(v))
        assert t_interval(values, level=0.9) == pytest.approx(expected90, abs=1e-12)
    assert t_interval([0.97, 0.99, 1.0], bounds=(0.0, 1.0))[1] == 1.0 < t_interval([0.97, 0.99, 1.0])[1]
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(x) for x in t_interval([0.5]))


def test_effect_size_dz_is_the_paired_t_statistic_over_root_n() -> None:
    a, b = np.array([0.91, 0.88, 0.93, 0.9, 0.95]), np.array([0.9, 0.86, 0.9, 0.91, 0.9])
    t = stats.ttest_rel(a, b).statistic
    assert effect_size_dz(a - b) == pytest.approx(t / math.sqrt(5))
    assert paired_difference(a, b)["d_z"] == pytest.approx(t / math.sqrt(5))
    assert effect_size_dz([0.1, 0.1, 0.1]) == math.inf and effect_size_dz([-0.1, -0.1]) == -math.inf
    assert math.isnan(effect_size_dz([0.0, 0.0, 0.0])) and math.isnan(effect_size_dz([0.3]))


def test_paired_difference_reports_n_interval_p_and_the_bootstrap_only_for_enough_pairs() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(0.7, 0.9, BOOTSTRAP_MIN_N)
    a = b + rng.normal(0.02, 0.02, BOOTSTRAP_MIN_N)
    few = paired_difference(a[:5], b[:5])
    d = a[:5] - b[:5]
    assert few["n"] == 5 and few["mean"] == pytest.approx(d.mean()) and few["bootstrap_ci95"] is None
    assert (few["ci95_low"], few["ci95_high"]) == pytest.approx(t_interval(d))
    assert few["p_sign_flip"] == pytest.approx(brute_force_p(d)) and few["p_method"] == "exact"
    assert few["wins"] + few["ties"] + few["losses"] == 5
    assert paired_difference(a[:-1], b[:-1])["bootstrap_ci95"] is None
    many = paired_difference(a, b)
    low, high = many["bootstrap_ci95"]
    assert low < np.mean(a - b) < high and many["p_method"] == ("exact" if BOOTSTRAP_MIN_N <= EXACT_MAX_N
                                                               else "monte-carlo")
    more = paired_difference(np.r_[a, a[:EXACT_MAX_N]], np.r_[b, b[:EXACT_MAX_N]])
    assert more["p_method"] == "monte-carlo" and more["n"] == BOOTSTRAP_MIN_N + EXACT_MAX_N
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([], [])


def test_the_corrected_resampled_t_widens_the_t_interval_by_the_nadeau_bengio_factor() -> None:
    d = np.array([0.012, -0.004, 0.031, 0.007, 0.0, 0.019, -0.011, 0.025, 0.006, 0.014])
    c = corrected_resampled_t(d, n_train=318, n_test=79)
    se = math.sqrt((1 / 10 + 79 / 318) * d.var(ddof=1))
    assert c["t"] == pytest.approx(d.mean() / se)
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(d.mean() / se), 9))
    plain = t_interval(d)
    ratio = (c["high"] - c["low"]) / (plain[1] - plain[0])
    assert ratio == pytest.approx(math.sqrt((1 / 10 + 79 / 318) / (1 / 10)))  # wider by exactly this factor
    assert c["low"] < d.mean() < c["high"]
    assert math.isnan(corrected_resampled_t([0.1], 10, 2)["t"])
