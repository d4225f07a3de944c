"""The controls that locate an effect of the circuit: the quantum head without entanglement, and `fourier`, the
classical model of the circuit's spectrum."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.experiments.compare import parse_head
from qtransfer.features.pipeline import FeatureSplit
from qtransfer.models.fourier import FOURIER_FEATURES, FourierHead, encoding_degrees, frequencies, spectrum_size
from qtransfer.models.heads import DressedQuantumHead, build_head, create_head
from qtransfer.models.reduction import Reduction
from qtransfer.quantum.backends import get_backend
from qtransfer.quantum.circuits import (
    TEMPLATES,
    Circuit,
    Gate,
    Observable,
    inp,
    make_circuit,
    without_entanglement,
)
from qtransfer.training.fit import FitJob, fit_group

# ------------------------------------------------------------------------------- quantum:entangle=false


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_without_entanglement_keeps_every_one_qubit_gate_input_weight_and_observable(template: str) -> None:
    full = make_circuit(template, 5, 3)
    control = make_circuit(template, 5, 3, entangle=False)
    assert control == without_entanglement(full) and control.name == f"{template}:entangle=false"
    assert any(len(g.wires) > 1 for g in full.gates)  # there was something to remove
    assert control.gates == tuple(g for g in full.gates if len(g.wires) == 1)  # in order, none else dropped
    assert (control.n_qubits, control.n_inputs, control.weight_shape, control.observables) == \
        (full.n_qubits, full.n_inputs, full.weight_shape, full.observables)
    used = {(p.source, p.index) for g in control.gates for p in g.params if p.source != "const"}
    assert used == {("input", i) for i in range(full.n_inputs)} | {("weight", i) for i in range(full.n_weights)}


def test_the_tutorial_control_is_minus_sine_of_input_plus_weights_per_wire() -> None:
    # H|0> = RY(pi/2)|0>, and RY angles on one wire add: RY(x + sum_k w_k) RY(pi/2)|0> has <Z> = cos(x + sum_k w_k
    # + pi/2) = -sin(x + sum_k w_k). With the CNOTs gone nothing else acts on the wire.
    torch.manual_seed(3)
    head = DressedQuantumHead(10, 3, n_qubits=4, depth=3, entangle=False).double()
    with torch.no_grad():
        head.q_params.normal_(0, 1.5)
    features = torch.randn(16, 10, dtype=torch.float64)
    angles = head.circuit_inputs(features)
    expected = head.post_net(-torch.sin(angles + head.q_params.view(3, 4).sum(0)))
    torch.testing.assert_close(head(features), expected, atol=1e-12, rtol=0)
    entangled = DressedQuantumHead(10, 3, n_qubits=4, depth=3).double()
    entangled.load_state_dict(head.state_dict())  # same parameters, same shapes
    assert (entangled(features) - expected).abs().max() > 1e-2  # the CNOTs did matter


def _one_wire(circuit: Circuit, wire: int) -> Circuit:
    """The gates of `wire` alone, moved to wire 0 of a one-qubit circuit measuring Z."""
    gates = tuple(Gate(g.name, (0,), g.params) for g in circuit.gates if g.wires == (wire,))
    return Circuit(1, circuit.n_inputs, circuit.weight_shape, gates, (Observable("Z", (0,)),))


@pytest.mark.parametrize("template", sorted(TEMPLATES), ids=str)
def test_the_control_equals_one_wire_pennylane_runs_and_so_do_its_gradients(template: str) -> None:
    from support.pennylane_reference import reference_expvals

    control = make_circuit(template, 3, 2, entangle=False)
    g = torch.Generator().manual_seed(7)
    inputs = (torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5) * math.pi
    weights = torch.randn(control.n_weights, generator=g, dtype=torch.float64)
    x, w = inputs.clone().requires_grad_(), weights.clone().requires_grad_()
    ours = get_backend("torch")(control, x, w)
    per_wire = torch.cat([reference_expvals(_one_wire(control, i), inputs, weights) for i in range(3)], dim=1)
    torch.testing.assert_close(ours, per_wire, atol=1e-12, rtol=0)

    cotangent = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    ours_grad = torch.autograd.grad((ours * cotangent).sum(), (x, w))
    xr, wr = inputs.clone().requires_grad_(), weights.clone().requires_grad_()
    theirs = reference_expvals(control, xr, wr)  # the whole control circuit on default.qubit, backprop
    torch.testing.assert_close(theirs, ours, atol=1e-12, rtol=0)
    theirs_grad = torch.autograd.grad((theirs * cotangent).sum(), (xr, wr))
    for a, b in zip(ours_grad, theirs_grad):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert ours_grad[1].abs().min() > 0  # every weight reaches an output


def test_entangle_setting_from_config_and_head_spec() -> None:
    spec = parse_head("quantum:entangle=false,depth=2")
    assert dict(spec.settings) == {"entangle": False, "depth": 2}
    head = build_head(spec.config(TrainConfig()), 12, 2)
    assert head.circuit.name == "tutorial:entangle=false" and head.q_params.numel() == 8
    assert not any(g.name == "CNOT" for g in head.circuit.gates)
    assert dict(parse_head("quantum:entangle=True").settings) == {"entangle": True}
    with pytest.raises(InputError, match=r"'entangle=maybe'.*write entangle=true or entangle=false"):
        parse_head("quantum:entangle=maybe")
    assert cli.parse_args(["train", "--data", "d", "--no-entangle"]).entangle is False
    assert cli.parse_args(["train", "--data", "d"]).entangle is True


def test_compare_runs_the_quantum_head_beside_its_control_each_stacked_over_seeds(
        tmp_path: Path, hymenoptera: Path, shared_cache: Path) -> None:
    assert cli.main(["--quiet", "compare", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers",
                     "0", "--out", str(tmp_path), "--epochs", "1", "--depth", "2", "--heads", "quantum",
                     "quantum:entangle=false", "--seed-list", "1", "2"]) == 0
    (run,) = tmp_path.iterdir()
    runs = json.loads((run / "compare.json").read_text())["runs"]
    assert [(r["label"], r["seed"], r["stacked"]) for r in runs] == \
        [("quantum", 1, 2), ("quantum", 2, 2), ("quantum:entangle=false", 1, 2), ("quantum:entangle=false", 2, 2)]
    assert runs[2]["settings"] == {"entangle": False}
    assert len({r["parameters"] for r in runs}) == 1  # the same shape: only the gates differ
    for seed in (0, 1):  # the same seed starts from the same weights, so the curves differ by the circuit alone
        assert runs[seed]["curves"]["train_loss"] != runs[2 + seed]["curves"]["train_loss"]
    assert all(0.5 < r["best_val_acc"] <= 1 for r in runs)


# ------------------------------------------------------------------------------- fourier


def test_the_spectrum_is_pennylanes_circuit_spectrum_of_the_tutorial_encoding() -> None:
    import pennylane as qml

    circuit = make_circuit("tutorial", 2, 2)

    @qml.qnode(qml.device("default.qubit", wires=2))
    def run(x, w):
        ops = {"H": qml.Hadamard, "CNOT": qml.CNOT, "RY": qml.RY}
        for g in circuit.gates:
            params = [x[p.index] if p.source == "input" else w[p.index] for p in g.params]
            op = ops[g.name](*params, wires=list(g.wires))
            if g.kind == "input":  # the encoding gates, whose spectrum circuit_spectrum reads
                qml.fourier.mark(op, f"x{g.params[0].index}")
        return [qml.expval(qml.PauliZ(i)) for i in range(2)]

    spectra = qml.fourier.circuit_spectrum(run)(np.zeros(2), np.zeros(circuit.n_weights))
    expected = {tuple(int(f) for f in w) for w in np.array(np.meshgrid(spectra["x0"], spectra["x1"])).T.reshape(-1, 2)}
    ours = frequencies(encoding_degrees(circuit))
    assert encoding_degrees(circuit) == (1, 1) and spectrum_size((1, 1)) == len(ours) == 4
    both_signs = {tuple(w) for w in ours} | {tuple(-w) for w in ours} | {(0, 0)}
    assert both_signs == expected and len(both_signs) == 9  # every frequency once, up to sign


def test_the_degree_is_counted_from_the_circuit_and_large_spectra_are_sampled_by_the_seed() -> None:
    reuploaded = Circuit(2, 2, (), (Gate("RY", (0,), (inp(0),)), Gate("RX", (1,), (inp(1),)), Gate("CNOT", (0, 1)),
                                    Gate("RZ", (0,), (inp(0),))), (Observable("Z", (0,)),))
    assert encoding_degrees(reuploaded) == (2, 1)  # input 0 encoded twice: frequencies -2..2
    omega = frequencies((2, 1))
    assert len(omega) == 7 and np.abs(omega[:, 0]).max() == 2 and np.abs(omega[:, 1]).max() == 1
    eight = frequencies((1,) * 8, seed=5)
    assert spectrum_size((1,) * 8) == 3280 and eight.shape == (FOURIER_FEATURES, 8)
    rows = {tuple(w) for w in eight}
    assert len(rows) == FOURIER_FEATURES and not rows & {tuple(-w) for w in eight}  # distinct, never a pair
    assert np.array_equal(frequencies((1,) * 8, seed=5), eight)
    assert not np.array_equal(frequencies((1,) * 8, seed=6), eight)
    with pytest.raises(InputError, match=r"gate 0 \(CRY\).*encodes an input otherwise"):
        encoding_degrees(Circuit(2, 1, (), (Gate("CRY", (0, 1), (inp(0),)),), (Observable("Z", (0,)),)))


def _xor_of_angles(n: int, seed: int) -> np.ndarray:
    """Rows near four clusters (axes of unequal spread, so the PCA keeps them) and four columns of small noise."""
    rng = np.random.default_rng(seed)
    corners = np.c_[rng.choice([-1.5, 1.5], n), rng.choice([-1.0, 1.0], n)]
    return np.c_[corners + 0.3 * rng.standard_normal((n, 2)), 0.1 * rng.standard_normal((n, 4))]


@pytest.fixture(scope="module")
def toy() -> tuple[torch.Tensor, ...]:
    """sign(cos(x0 - x1)) at the head's own angles x = pi/2 tanh(z) of z-scored principal components (the
    Reduction the head fits on these training rows): an XOR of the clusters, which no linear model of z draws."""
    train, test = _xor_of_angles(200, 0), _xor_of_angles(200, 1)
    reduction = Reduction.fitted(train, 2)

    def labels(x: np.ndarray) -> np.ndarray:
        angles = math.pi / 2 * np.tanh(reduction.transform(x))
        return (np.cos(angles[:, 0] - angles[:, 1]) > 0).astype(np.int64)

    return tuple(torch.from_numpy(a) for a in (train, labels(train), test, labels(test)))


def _accuracy(head: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(x).argmax(1) == y).double().mean())


@pytest.mark.slow
def test_fourier_fits_a_function_of_its_spectrum_where_logistic_regression_cannot(toy) -> None:
    x, y, x_test, y_test = toy
    assert 0.4 < float(y.double().mean()) < 0.6  # balanced: chance is 0.5
    fourier = create_head("fourier", 6, 2, n_qubits=2, depth=2, pca=2)
    choices = fourier.fit(x, y, seed=0)
    assert choices["frequencies"] == 4 and not choices["sampled"] and choices["C"] in FourierHead.SEARCH["C"]
    logreg = create_head("logreg", 6, 2, pca=2)
    logreg.fit(x, y, seed=0)
    assert _accuracy(fourier, x_test, y_test) > 0.95
    assert _accuracy(logreg, x_test, y_test) < 0.7
    with torch.no_grad():
        assert torch.allclose(fourier(x_test.float()).softmax(1).double(), fourier(x_test).softmax(1), atol=1e-5)

    fresh = create_head("fourier", 6, 2, n_qubits=2, depth=2, pca=2)  # a fresh head loads a fitted one
    fresh.load_state_dict(fourier.state_dict())
    assert fresh.choices == choices and fresh.frequencies.shape == (4, 2)
    with torch.no_grad():
        assert torch.equal(fresh(x_test), fourier(x_test))

    from qtransfer.export.plain import plain_head

    with torch.no_grad():  # it traces like every fitted head
        traced = torch.jit.trace(plain_head(fourier), x_test[:2])
        torch.testing.assert_close(traced(x_test), fourier(x_test), atol=1e-12, rtol=0)


def test_fourier_refuses_a_pca_other_than_its_qubits() -> None:
    with pytest.raises(InputError, match="--pca 3 differs: drop --pca or set it to 4"):
        create_head("fourier", 8, 2, n_qubits=4, pca=3)
    with pytest.raises(InputError, match="--pca 2 differs: drop --pca or set it to 4"):
        TrainConfig(data="-", head="fourier", pca=2).validate()
    assert create_head("fourier", 8, 2, n_qubits=4, pca=4).reduction.pca == 4


def test_a_fixed_c_is_fitted_once_without_inner_folds(toy, monkeypatch) -> None:
    import sklearn.model_selection

    x, y, x_test, y_test = toy
    c = FourierHead.SEARCH["C"][5]

    class NoSearch:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a fixed C needs no inner cross-validation")

    monkeypatch.setattr(sklearn.model_selection, "GridSearchCV", NoSearch)
    config = TrainConfig(data="-", head="fourier", n_qubits=2, depth=2, seed=4)
    val = FeatureSplit(x_test, y_test, [])
    (result,) = fit_group([FitJob(config, FeatureSplit(x, y, []), val, fixed={"C": c})], 2, torch.device("cpu"))
    assert result.choices == {"C": c, "frequencies": 4, "sampled": False}
    assert result.best["val_acc"] > 0.95
    with pytest.raises(InputError, match=r"no hyper-parameter.*'gamma'.*search space: C"):
        FourierHead(6, 2, n_qubits=2).fix({"gamma": 1.0})
