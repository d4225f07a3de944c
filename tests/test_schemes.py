"""Schemes QC and QQ: their datasets, networks, gradients and short trainings that must learn."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qtransfer.experiments.quantum_to_classical import (
    classical_network,
    features_by_depth,
    noisy_coherent_states,
    train_classifier,
)
from qtransfer.experiments.quantum_to_quantum import (
    GaussianityBatch,
    GaussianityClassifier,
    QubitTransferClassifier,
    gaussianity_batches,
    notebook_stream,
    train_gaussianity,
    train_seeds,
    vacuum_loss,
)
from qtransfer.models.quantum_backbones import (
    QubitNetwork,
    TetrominoNetwork,
    create_quantum_backbone,
    pretrain_qubit_tetromino,
)


def test_the_noisy_coherent_states_are_balanced_seeded_and_have_the_papers_noise() -> None:
    x, y = noisy_coherent_states(2000, seed=3)
    assert x.shape == (14000, 4) and torch.bincount(y).tolist() == [2000] * 7
    torch.testing.assert_close(noisy_coherent_states(2000, seed=3)[0], x)
    centre = torch.tensor([1.4, 0.0, 1.4, 0.0], dtype=torch.float64)
    assert (x[y == 0] - centre).std(0).sub(0.6).abs().max() < 0.03


def test_features_at_every_cut_in_one_pass_equal_separately_cut_networks(mari2019: Path) -> None:
    network = create_quantum_backbone("cv-tetromino", depth=6, weights=mari2019)
    x, _ = noisy_coherent_states(3, seed=0)
    by_depth = features_by_depth(network, x, [0, 2, 6], chunk=8)
    for d in (0, 2, 6):
        torch.testing.assert_close(by_depth[d], TetrominoNetwork(network.params, d)(x))


@pytest.mark.slow
def test_qc_learns_from_the_cut_network_where_photon_counting_alone_cannot(mari2019: Path) -> None:
    network = create_quantum_backbone("cv-tetromino", depth=15, weights=mari2019)
    train_x, train_y = noisy_coherent_states(300, seed=1)
    test_x, test_y = noisy_coherent_states(100, seed=2)
    train_f, test_f = features_by_depth(network, train_x, [0, 15]), features_by_depth(network, test_x, [0, 15])
    acc = {}
    for d in (0, 15):
        torch.manual_seed(0)
        tr, te = train_f[d], test_f[d]
        run = train_classifier(classical_network(16, 7), tr, train_y, te, test_y, lr=0.05)
        acc[d] = run.test_acc
        if d == 15:
            assert run.train_loss[-1] < 0.8 * run.train_loss[0]
    assert acc[15] > 0.6 and acc[0] < 0.3  # chance is 1/7


def test_running_loss_and_accuracy_score_each_batch_before_its_step_as_the_notebook_prints_them() -> None:
    x, y = noisy_coherent_states(50, seed=0)
    x = x.float()
    torch.manual_seed(0)
    start = classical_network(4, 7)
    before = torch.nn.functional.cross_entropy(start(x[:7]), y[:7]).item()
    hits = (start(x[:7]).argmax(1) == y[:7]).double().mean().item()
    torch.manual_seed(0)
    run = train_classifier(classical_network(4, 7), x, y, x, y)
    assert run.train_loss[0] == pytest.approx(before) and run.train_acc[0] == pytest.approx(hits)
    assert len(run.train_acc) == 50 and all(0 <= a <= 1 for a in run.train_acc)


def test_network_b_can_start_as_the_notebooks_tensorflow_layer() -> None:
    layer = classical_network(16, 7, init="notebook")[0]
    assert torch.count_nonzero(layer.bias) == 0
    assert layer.weight.abs().max() <= math.sqrt(6 / (16 + 7)) and layer.weight.abs().max() > 0.25  # not U(±1/4)
    with pytest.raises(ValueError, match="'torch' or 'notebook'"):
        classical_network(16, 7, init="glorot")


def test_gaussianity_inputs_are_coherent_or_one_photon_states() -> None:
    labels = torch.tensor([0, 1])
    zero = torch.zeros(2, dtype=torch.float64)
    states = GaussianityBatch(labels, zero, zero, zero).states(cutoff=20)
    p = states.probabilities()
    assert p[0, 0].item() == pytest.approx(math.exp(-1), abs=1e-12)  # |α=1>
    assert p[1, 1].item() == pytest.approx(1.0) and p[1, 0].item() == 0  # |1>
    batches = gaussianity_batches(50, 8, seed=0)
    assert len(batches) == 50 and all(len(b.labels) == 8 for b in batches)
    sq = torch.cat([b.squeezing for b in batches])
    assert sq.abs().max() <= 0.5 and set(torch.cat([b.labels for b in batches]).tolist()) == {0, 1}


def test_qq_gradients_reach_only_network_b_and_equal_finite_differences(mari2019: Path) -> None:
    network_a = create_quantum_backbone("cv-gaussianity", weights=mari2019)
    torch.manual_seed(0)
    model = GaussianityClassifier(network_a, layers=2, cutoff=12, init_sd=0.3)
    batch = gaussianity_batches(1, 4, seed=5)[0]

    def loss() -> torch.Tensor:
        return vacuum_loss(model(batch)[0], batch.labels)

    value = loss()
    value.backward()
    grad = model.trainable.params.grad.clone()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["trainable.params"]
    eps = 1e-6
    with torch.no_grad():
        for index in [(0, 0), (1, 1), (2, 0), (5, 1), (4, 1)]:
            model.trainable.params[index] += eps
            up = loss().item()
            model.trainable.params[index] -= 2 * eps
            down = loss().item()
            model.trainable.params[index] += eps
            assert grad[index].item() == pytest.approx((up - down) / (2 * eps), abs=1e-7)


@pytest.mark.slow
def test_qq_training_separates_the_vacuum_probabilities_of_the_two_classes(mari2019: Path) -> None:
    network_a = create_quantum_backbone("cv-gaussianity", weights=mari2019, squeeze_in_layer=False)
    torch.manual_seed(0)
    model = GaussianityClassifier(network_a, layers=3, cutoff=15)
    test = gaussianity_batches(40, 8, seed=9)
    labels = torch.cat([b.labels for b in test])

    def separation() -> float:
        with torch.no_grad():
            p0 = torch.cat([model(b)[0] for b in test])
        return (p0[labels == 1].mean() - p0[labels == 0].mean()).item()

    untrained = separation()
    run = train_gaussianity(model, gaussianity_batches(150, 8, seed=0), test, lr=0.05)
    assert run.train_loss[-1] < run.train_loss[10] and run.test_loss < math.log(2)
    assert separation() > untrained + 0.1
    assert 0 < run.norm <= 1
    assert len(run.train_acc) == 150 and all(0 <= a <= 1 for a in run.train_acc)  # running, as the notebook prints


def test_qubit_qq_keeps_network_a_fixed_and_outputs_class_log_probabilities() -> None:
    network_a = QubitNetwork(pretrain_qubit_tetromino(steps=50), 3)
    torch.manual_seed(0)
    model = QubitTransferClassifier(network_a, "strongly_entangling", 4, 1.0, layers=2, classes=7)
    x, y = noisy_coherent_states(2, seed=0)
    log_p = model(x)
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(14, dtype=torch.float64), atol=1e-5, rtol=0)
    assert model.weights.numel() == 2 * 4 * 3 and model.fixed.numel() == 3 * 4 * 3
    before = model.fixed.clone()
    run = train_classifier(model, *noisy_coherent_states(60, seed=1), x, y, lr=0.05)
    torch.testing.assert_close(model.fixed, before)
    assert run.train_loss[-1] < run.train_loss[0]
    assert np.isfinite(run.test_loss)


# ------------------------------------------------------------------ the paper's QQ model, stacked seeds

SF_REFERENCE = Path(__file__).parent / "reference" / "qq_strawberryfields.json"  # Strawberry Fields 0.23, fock backend


def test_the_notebook_circuit_with_the_truncated_gate_equals_strawberry_fields(mari2019: Path) -> None:
    reference = json.loads(SF_REFERENCE.read_text())
    first = notebook_stream(1, 1, 0)[0][0]  # the notebook's stream, drawn as the notebook draws it
    assert first.labels.tolist() == reference["batch"]["labels"]
    torch.testing.assert_close(first.squeezing, torch.tensor(reference["batch"]["sq"], dtype=torch.float64))
    torch.testing.assert_close(first.rotation2, torch.tensor(reference["batch"]["r2"], dtype=torch.float64))
    weights = torch.tensor(reference["network_b_weights"], dtype=torch.float64)
    for cutoff, theirs in reference["forward"].items():
        for cubic_phase in ("truncated", "exact"):
            a = create_quantum_backbone("cv-gaussianity", weights=mari2019, squeeze_in_layer=False,
                                        cubic_phase=cubic_phase)
            p0, state = GaussianityClassifier(a, 3, int(cutoff), weights=weights, cubic_phase=cubic_phase)(first)
            gap = (p0 - torch.tensor(theirs["p0"], dtype=torch.float64)).abs().max().item()
            if cubic_phase == "truncated":  # Strawberry Fields' own gate: the same circuit
                assert gap < 1e-7
                torch.testing.assert_close(state.norm(), torch.tensor(theirs["norm"], dtype=torch.float64), atol=1e-7,
                                           rtol=0)
            else:  # the exact gate gives another circuit, nearer to it at the larger cutoff
                assert gap > 1e-4
    # network A is frozen: applied as one cached matrix, equal to its gates one by one
    a = create_quantum_backbone("cv-gaussianity", weights=mari2019, squeeze_in_layer=True, cubic_phase="truncated")
    s = first.states(15)
    torch.testing.assert_close(a(s).ket, a._layers(s).ket, atol=1e-13, rtol=0)


def test_a_stacked_seed_equals_its_solo_run(mari2019: Path) -> None:
    a = create_quantum_backbone("cv-gaussianity", weights=mari2019, squeeze_in_layer=False)
    seeds = [3, 5, 8]
    data = [notebook_stream(s, 12, 3) for s in seeds]
    stacked = train_seeds(a, data, seeds, cutoff=10, lr=0.05)
    for seed, (train, test), run in zip(seeds, data, stacked):
        torch.manual_seed(seed)  # the solo run draws network B's start as the stacked one does
        solo = train_gaussianity(GaussianityClassifier(a, 3, 10), train, test, lr=0.05)
        np.testing.assert_allclose(run.train_loss, solo.train_loss, rtol=0, atol=1e-9)
        assert run.train_acc == solo.train_acc
        assert run.test_loss == pytest.approx(solo.test_loss, abs=1e-9) and run.test_acc == solo.test_acc
    assert len({run.train_loss[-1] for run in stacked}) == 3  # three different runs, not one repeated


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_papers_model_on_the_notebooks_stream_reproduces_its_printed_run(mari2019: Path) -> None:
    # q2q notebook: truncated V (Strawberry Fields'), cutoff 15, RandomState(1), 500 steps, then 500 test batches
    a = create_quantum_backbone("cv-gaussianity", weights=mari2019, squeeze_in_layer=False, cubic_phase="truncated")
    run = train_seeds(a, [notebook_stream(1)], [0], cutoff=15, cubic_phase="truncated")[0]
    # Strawberry Fields on this stream (issue 27); printed 0.8698–0.8755
    assert run.test_acc == pytest.approx(0.8708, abs=0.01)
    assert 0.6059 - 0.005 <= run.train_loss[499] <= 0.6141 + 0.005  # the printed runs' running loss after 500
    assert 0.4713 - 0.01 <= run.train_acc[499] <= 0.4900 + 0.01
    assert run.train_loss[99] == pytest.approx(0.689, abs=0.003) and run.train_acc[99] == pytest.approx(0.37, abs=0.01)
