"""The two-spirals experiment: the paper's data, a stratified standardised split, training and figures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qtransfer.data.spirals import SpiralsData, make_spirals, spirals_dataset
from qtransfer.experiments.spirals import (
    plot_decision_boundaries,
    plot_spirals_curves,
    train_spirals,
)


def _notebook_twospirals(n_points: int, noise: float, turns: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper notebook's generator, as written there (n_points per class), with a seeded stream."""
    rng = np.random.RandomState(seed)
    n = np.sqrt(rng.rand(n_points, 1)) * turns * (2 * np.pi)
    d1x = -np.cos(n) * n + rng.rand(n_points, 1) * noise
    d1y = np.sin(n) * n + rng.rand(n_points, 1) * noise
    return (
        np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))),
        np.hstack((np.zeros(n_points), np.ones(n_points))),
    )


@pytest.fixture(scope="module")
def data152() -> SpiralsData:
    return spirals_dataset(1.52)


def test_shape_dtype_and_class_balance():
    x, y = make_spirals(1.52, n_points=2200)
    assert x.shape == (2200, 2) and x.dtype == torch.float64
    assert y.shape == (2200,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [1100, 1100]
    with pytest.raises(ValueError, match="even"):
        make_spirals(1.52, n_points=101)


def test_matches_the_paper_notebook():
    x, y = make_spirals(2.0, n_points=600, noise=0.2, seed=5)
    ref_x, ref_y = _notebook_twospirals(300, noise=0.2, turns=2.0, seed=5)
    np.testing.assert_array_equal(x.numpy(), ref_x)
    np.testing.assert_array_equal(y.numpy(), ref_y)


def test_seeded():
    a, _ = make_spirals(1.52, seed=3)
    b, _ = make_spirals(1.52, seed=3)
    c, _ = make_spirals(1.52, seed=4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_class_one_is_class_zero_reflected():
    x, y = make_spirals(1.52, n_points=400, noise=0.2)
    assert torch.equal(x[y == 1], -x[y == 0])


@pytest.mark.parametrize("turns", [1.52, 2.0])
def test_noiseless_points_lie_on_the_spiral(turns: float):
    x, y = make_spirals(turns, n_points=2000, noise=0.0)
    p = x[y == 0]
    t = p.norm(dim=1)  # without noise the radius is the angle t
    torch.testing.assert_close(p[:, 0], -torch.cos(t) * t)
    torch.testing.assert_close(p[:, 1], torch.sin(t) * t)
    assert t.max() <= turns * 2 * math.pi
    assert t.max() > 0.99 * turns * 2 * math.pi  # t = sqrt(U) * turns * 2pi reaches the outer end


def test_noise_is_a_bounded_positive_shift():
    clean, _ = make_spirals(1.52, n_points=1000, noise=0.0, seed=8)
    noisy, _ = make_spirals(1.52, n_points=1000, noise=0.2, seed=8)
    shift = (noisy - clean)[:500]  # class 0: U[0, 1) * noise in each coordinate
    assert shift.min() >= 0 and shift.max() < 0.2
    assert shift.mean().item() == pytest.approx(0.1, abs=0.01)


def test_split_is_stratified_disjoint_and_standardised(data152: SpiralsData):
    d = data152
    assert d.train_x.shape == (2000, 2) and d.test_x.shape == (200, 2)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert torch.bincount(d.train_y).tolist() == [1000, 1000]
    assert torch.bincount(d.test_y).tolist() == [100, 100]
    raw, labels = make_spirals(1.52, n_points=2200)
    train_raw = d.train_x.double() * d.std + d.mean
    test_raw = d.test_x.double() * d.std + d.mean
    # each split point is one raw point (float32 round-off apart), with its label, and none is used twice
    dist, idx = torch.cdist(torch.cat([train_raw, test_raw]), raw).min(1)
    assert dist.max() < 1e-4
    assert sorted(idx.tolist()) == list(range(2200))
    assert torch.equal(labels[idx], torch.cat([d.train_y, d.test_y]))
    torch.testing.assert_close(d.train_x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.train_x.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    # the test split is scaled with the train statistics, not its own
    torch.testing.assert_close(d.standardise(test_raw), d.test_x, atol=1e-5, rtol=1e-5)
    assert spirals_dataset(1.52, seed=21).test_x.equal(d.test_x)
    assert not spirals_dataset(1.52, seed=22).test_x.equal(d.test_x)


def test_training_records_curves(data152: SpiralsData):
    r = train_spirals("quantum", data152, steps=120, seed=0)
    assert len(r.train_loss) == 120
    assert r.eval_steps == [0, 50, 100, 120]
    assert r.test_acc == r.test_accs[-1] and r.test_loss == r.test_losses[-1]
    assert r.head == "quantum" and r.turns == 1.52 and r.seconds > 0
    again = train_spirals("quantum", data152, steps=120, seed=0)
    assert again.train_loss == r.train_loss


# Untrained nets (lr 0) reach at most 0.60 test accuracy over 40 seeds, 0.49 on average. After 1000
# steps, seeds 0-9 reach 0.90-1.00 (quantum) and 0.61-0.98 (classical, which sometimes stalls), so
# the 5-seed mean is above 0.8 for both. The quantum head, three times slower per step, learns
# faster: after 300 steps seeds 0-9 reach 0.77-0.92 (5-seed means 0.82 and 0.80), each seed above
# the threshold; the classical head needs its 1000 steps (after 500, seeds 0-4 average only 0.76).
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("head, steps", [("classical", 1000), ("quantum", 300)])
def test_learns_the_spirals(data152: SpiralsData, head: str, steps: int):
    accs = [train_spirals(head, data152, steps=steps, seed=s).test_acc for s in range(5)]
    assert np.mean(accs) > 0.7, accs


@pytest.mark.parametrize("head", ["classical", "quantum"])
def test_untrained_net_fails_the_learning_threshold(data152: SpiralsData, head: str):
    accs = [train_spirals(head, data152, steps=50, lr=0.0, seed=s).test_acc for s in range(5)]
    assert np.mean(accs) < 0.6, accs


@pytest.mark.slow
def test_plots_write_pngs(tmp_path, data152: SpiralsData):
    d2 = spirals_dataset(2.0, n_train=200, n_test=40)
    results = {
        (turns, head): train_spirals(head, data, steps=20, seed=0)
        for turns, data in [(1.52, data152), (2.0, d2)]
        for head in ("classical", "quantum")
    }
    boundaries, curves = tmp_path / "figs" / "boundaries.png", tmp_path / "curves.png"
    plot_decision_boundaries(results, {1.52: data152, 2.0: d2}, boundaries)
    plot_spirals_curves(results, curves)
    for path in (boundaries, curves):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["boundaries.png", "curves.png", "figs"]
