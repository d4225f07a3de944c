"""The benchmarking protocol's statistics: Holm, the corrected TOST, verdicts, Friedman + Nemenyi, the scorecard, its
table and the critical-difference figure, checked against statsmodels, scipy and scikit-posthocs and by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scikit_posthocs
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from qtransfer.errors import InputError
from qtransfer.experiments.stats import (
    corrected_resampled_t,
    friedman_nemenyi,
    holm,
    scorecard,
    tost_corrected,
    verdict,
)
from qtransfer.report.figures import plot_critical_difference
from qtransfer.report.tables import scorecard_markdown

NAN = math.nan


@pytest.mark.slow
def test_holm_adjusts_by_hand_and_passes_nan_through() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01, 2·0.03, max(0.06, 1·0.04): each adjusted p at least the one before it
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.01, NAN, 0.04, 0.03])  # the NaN is not a fourth test
    assert math.isnan(adjusted[1])
    assert [adjusted[i] for i in (0, 2, 3)] == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert all(math.isnan(p) for p in holm([NAN, NAN]))
    assert holm([]) == []


FOLD_DIFFERENCES = [
    [0.001, -0.002, 0.0, 0.003, -0.001],
    [0.012, -0.004, 0.031, 0.007, 0.0],
    [-0.02, -0.011, -0.005, -0.017, -0.009, -0.013],
]


@pytest.mark.parametrize("d", FOLD_DIFFERENCES)
@pytest.mark.parametrize("margin", [0.01, 0.02])
def test_tost_without_the_correction_is_statsmodels_paired_tost(d: list[float], margin: float) -> None:
    reference = np.linspace(0.8, 0.9, len(d))
    p, lower, upper = ttost_paired(reference + np.asarray(d), reference, -margin, margin)
    ours = tost_corrected(d, n_train=100, n_test=0, margin=margin)
    assert ours["p"] == pytest.approx(p, rel=1e-9)
    assert ours["p_lower"] == pytest.approx(lower[1], rel=1e-9)
    assert ours["p_upper"] == pytest.approx(upper[1], rel=1e-9)
    assert ours["df"] == len(d) - 1 and ours["margin"] == margin


def test_the_correction_widens_the_interval_and_raises_p() -> None:
    d = FOLD_DIFFERENCES[0]
    plain, corrected = tost_corrected(d, 200, 0), tost_corrected(d, 200, 50)
    assert corrected["p"] > plain["p"]
    # se² = (1/J + n_test/n_train) s²: 1/5 + 50/200 against 1/5
    assert corrected["se"] / plain["se"] == pytest.approx(math.sqrt(0.45 / 0.2))
    assert corrected["high90"] - corrected["low90"] == pytest.approx(
        2 * stats.t.ppf(0.95, 4) * corrected["se"])
    # the TOST's standard error is the corrected t-test's: its 95% interval is mean ± t(0.975)·se
    t95 = corrected_resampled_t(d, 200, 50)
    assert t95["high"] - t95["low"] == pytest.approx(2 * stats.t.ppf(0.975, 4) * corrected["se"])


def test_equivalence_is_exactly_the_90_interval_inside_the_margin() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(rng.uniform(-0.03, 0.03), rng.uniform(0.001, 0.02), 5)
        t = tost_corrected(d, 200, 50, margin=0.02)
        inside = t["low90"] > -0.02 and t["high90"] < 0.02
        assert (t["p"] < 0.05) == inside


def test_clearly_equivalent_and_clearly_not() -> None:
    tiny = [0.001, -0.001, 0.0005, -0.0005, 0.0]
    assert tost_corrected(tiny, 200, 50, margin=0.05)["p"] < 1e-4
    far = [-0.10, -0.11, -0.09, -0.10, -0.105]
    assert tost_corrected(far, 200, 50, margin=0.05)["p"] > 0.999
    # the same differences straddling a narrow margin are not equivalent
    assert tost_corrected(FOLD_DIFFERENCES[1], 200, 50, margin=0.005)["p"] > 0.05


def test_the_margin_scales_with_the_differences() -> None:
    d = np.asarray(FOLD_DIFFERENCES[1])
    base = tost_corrected(d, 200, 50, margin=0.03)
    scaled = tost_corrected(10 * d, 200, 50, margin=0.3)
    assert scaled["p"] == pytest.approx(base["p"], rel=1e-9)
    assert scaled["low90"] == pytest.approx(10 * base["low90"])
    p = [tost_corrected(d, 200, 50, margin=m)["p"] for m in (0.01, 0.02, 0.04, 0.08)]
    assert p == sorted(p, reverse=True) and p[0] > 0.4 and p[1] > 0.05 > p[2]  # mean +0.0092


def test_tost_degenerate_cases() -> None:
    one = tost_corrected([0.01], 200, 50)
    assert math.isnan(one["p"]) and math.isnan(one["low90"]) and one["n"] == 1
    assert math.isnan(tost_corrected([], 200, 50)["p"])
    assert math.isnan(tost_corrected([0.01, 0.02], 0, 50)["p"])  # no training set: no correction is defined
    # equal differences: no spread, the mean is known exactly
    inside = tost_corrected([0.002] * 5, 200, 50, margin=0.01)
    assert inside["p"] == 0.0 and inside["low90"] == inside["high90"] == pytest.approx(0.002)
    assert tost_corrected([0.0] * 5, 200, 50)["p"] == 0.0  # identical predictions are equivalent
    assert tost_corrected([0.02] * 5, 200, 50, margin=0.01)["p"] == 1.0
    assert tost_corrected([-0.02] * 5, 200, 50, margin=0.01)["p"] == 1.0


def test_verdict_has_four_outcomes_and_equivalence_comes_first() -> None:
    assert verdict(0.02, 0.01, 0.40) == "better"
    assert verdict(-0.02, 0.01, 0.40) == "worse"
    assert verdict(0.001, 0.60, 0.01) == "equivalent"
    assert verdict(0.004, 0.001, 0.01) == "equivalent"  # significant, but within the margin
    assert verdict(0.03, 0.20, 0.30) == "inconclusive"
    assert verdict(0.03, 0.049, 0.30, alpha=0.01) == "inconclusive"
    assert verdict(0.03, NAN, NAN) == "inconclusive"


def test_friedman_matches_scipy_and_ranks_by_hand() -> None:
    # 4 blocks × 3 heads; block 3 ties a and b
    scores = {"a": [0.9, 0.8, 0.7, 0.85], "b": [0.8, 0.9, 0.7, 0.80], "c": [0.7, 0.6, 0.6, 0.75]}
    f = friedman_nemenyi(scores)
    statistic, p = stats.friedmanchisquare(*scores.values())
    assert f["statistic"] == pytest.approx(statistic) and f["p"] == pytest.approx(p)
    # ranks per block (1 = highest): a 1, 2, 1.5, 1; b 2, 1, 1.5, 2; c 3, 3, 3, 3
    assert f["average_ranks"] == pytest.approx({"a": 5.5 / 4, "b": 6.5 / 4, "c": 3.0})
    assert sum(f["average_ranks"].values()) == pytest.approx(6.0)  # k(k+1)/2
    low = friedman_nemenyi(scores, higher_is_better=False)["average_ranks"]
    assert low == pytest.approx({"a": 4 - 5.5 / 4, "b": 4 - 6.5 / 4, "c": 1.0})
    assert f["blocks"] == 4 and f["heads"] == ["a", "b", "c"]
    json.dumps(f)


def test_nemenyi_is_scikit_posthocs() -> None:
    table = np.array([[31, 27, 24], [31, 28, 31], [45, 29, 46], [21, 18, 48], [42, 36, 46], [32, 17, 40]])
    heads = ["x", "y", "z"]
    f = friedman_nemenyi({h: table[:, i] for i, h in enumerate(heads)})
    expected = scikit_posthocs.posthoc_nemenyi_friedman(table).to_numpy()
    ours = np.array([[f["nemenyi_p"][a][b] for b in heads] for a in heads])
    np.testing.assert_allclose(ours, expected)
    assert ours[1, 2] == pytest.approx(0.0376, abs=1e-4)  # y and z differ, the other pairs do not


def test_critical_difference_of_demsars_example() -> None:
    # Demšar (2006), section 3.2.2: k = 4 classifiers on N = 14 data sets, q_0.05 = 2.569, CD = 1.25
    rng = np.random.default_rng(0)
    f = friedman_nemenyi({h: rng.uniform(size=14) for h in "abcd"})
    assert f["q_alpha"] == pytest.approx(2.569, abs=5e-4)
    assert f["cd"] == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)), abs=2e-4)
    assert round(f["cd"], 2) == 1.25
    # his table of q_0.10 for k = 10: 2.920
    assert friedman_nemenyi({h: rng.uniform(size=5) for h in "abcdefghij"}, alpha=0.10)["q_alpha"] == pytest.approx(
        2.920, abs=5e-4)


def test_friedman_refuses_what_it_cannot_test() -> None:
    with pytest.raises(InputError, match="at least 3 heads"):
        friedman_nemenyi({"a": [0.9, 0.8], "b": [0.7, 0.6]})
    with pytest.raises(InputError, match="at least 2 blocks"):
        friedman_nemenyi({"a": [0.9], "b": [0.7], "c": [0.8]})
    with pytest.raises(InputError, match="same blocks"):
        friedman_nemenyi({"a": [0.9, 0.8], "b": [0.7], "c": [0.8, 0.1]})
    with pytest.raises(InputError, match="NaN"):
        friedman_nemenyi({"a": [0.9, 0.8], "b": [0.7, NAN], "c": [0.8, 0.1]})
    tied = friedman_nemenyi({"a": [0.5, 0.5], "b": [0.5, 0.5], "c": [0.5, 0.5]})
    assert math.isnan(tied["p"]) and tied["average_ranks"] == {"a": 2.0, "b": 2.0, "c": 2.0}


def synthetic_folds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.82, 0.92, 5)
    return {"quantum": reference,
            "classical": reference + rng.normal(0, 0.002, 5),
            "linear": reference - 0.10 + rng.normal(0, 0.005, 5),
            "svm:pca=4": reference + rng.normal(0, 0.06, 5)}


@pytest.mark.slow
def test_scorecard_verdicts_holm_and_ranks() -> None:
    card = scorecard(synthetic_folds(), "quantum", n_train=200, n_test=50, margin=0.05, seeds=20)
    rows = {r["head"]: r for r in card["rows"]}
    assert list(rows) == ["quantum", "classical", "linear", "svm:pca=4"]
    assert rows["quantum"]["reference"] and rows["quantum"]["delta"] is None
    assert rows["classical"]["delta"]["verdict"] == "equivalent"
    assert rows["linear"]["delta"]["verdict"] == "worse"
    assert rows["linear"]["delta"]["mean"] == pytest.approx(-0.10, abs=0.01)
    assert rows["svm:pca=4"]["delta"]["verdict"] == "inconclusive"
    deltas = [r["delta"] for r in card["rows"] if r["delta"]]
    for d in deltas:
        assert d["p_holm"] >= d["p"] and d["tost_p_holm"] >= d["tost_p"]
    assert max(d["p_holm"] for d in deltas) <= 1.0
    # Holm over three tests: the smallest p is multiplied by 3
    smallest = min(deltas, key=lambda d: d["p"])
    assert smallest["p_holm"] == pytest.approx(3 * smallest["p"])
    assert rows["quantum"]["n"] == 5 and rows["quantum"]["seeds"] == 20
    low, high = rows["quantum"]["ci95"]
    assert low < rows["quantum"]["mean"] < high
    assert card["friedman"]["average_ranks"]["linear"] == 4.0  # 10 points worse on every fold
    json.loads(json.dumps(card))


@pytest.mark.slow
def test_scorecard_of_two_heads_has_no_rank_test_and_refuses_unpaired_folds() -> None:
    folds = synthetic_folds()
    card = scorecard({"quantum": folds["quantum"], "linear": folds["linear"]}, "quantum", 200, 50)
    assert card["friedman"] is None and card["rows"][1]["delta"]["verdict"] == "worse"
    with pytest.raises(InputError, match="same folds"):
        scorecard({"quantum": folds["quantum"], "linear": folds["linear"][:4]}, "quantum", 200, 50)
    with pytest.raises(InputError, match="reference"):
        scorecard(folds, "mlp", 200, 50)


@pytest.mark.slow
def test_scorecard_markdown_states_the_tests_and_the_verdicts() -> None:
    card = scorecard(synthetic_folds(), "quantum", n_train=200, n_test=50, margin=0.05, seeds=20)
    text = scorecard_markdown(card, "ants/bees, 5 folds")
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("| `")]
    assert len(table) == 4
    linear = next(line for line in table if line.startswith("| `linear`"))
    d = card["rows"][2]["delta"]
    assert f"{d['mean']:+.4f}" in linear and "| worse |" in linear and f"[{d['low']:+.4f}, {d['high']:+.4f}]" in linear
    assert "(reference)" in table[0]
    for phrase in ("Nadeau and Bengio", "±0.05", "α = 0.05", "Holm", "20 seeds", "n = 5 outer folds",
                   "equivalent when the Holm TOST p < α", "Friedman", f"CD = {card['friedman']['cd']:.2f}"):
        assert phrase in text, phrase


@pytest.mark.parametrize("heads", [["quantum", "classical", "linear"],
                                   ["quantum", "quantum:entangle=false", "classical", "linear", "svm:pca=4", "svm",
                                    "logreg", "mlp", "fourier", "quantum:depth=2,lr=0.001"]])
def test_the_critical_difference_figure_is_written(tmp_path: Path, heads: list[str]) -> None:
    rng = np.random.default_rng(1)
    f = friedman_nemenyi({h: 0.9 - 0.02 * i + rng.normal(0, 0.03, 10) for i, h in enumerate(heads)})
    path = tmp_path / "cd.png"
    plot_critical_difference(f["average_ranks"], f["nemenyi_p"], path, "accuracy over 10 folds", cd=f["cd"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
