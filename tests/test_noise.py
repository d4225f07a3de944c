"""Shots, readout error and noise channels in the built-in engine, against PennyLane default.mixed."""
from __future__ import annotations

import math
import random

import pytest
import torch

from qtransfer import Circuit, Gate, Observable, const, inp, make_circuit, weight
from qtransfer.quantum.backends import TorchBackend
from qtransfer.quantum.density import CHANNELS, NoiseModel

pytest.importorskip("pennylane")
from support.pennylane_reference import reference_noisy_expvals

TOL = {"rtol": 1e-10, "atol": 1e-10}
# default.mixed (PennyLane 0.45) itself differs from default.qubit by up to ~1e-8 in float64 with no noise at all
# (test_default_mixed_itself_is_accurate_to_1e_8), so comparisons with it use this tolerance.
MIXED_TOL = {"rtol": 1e-7, "atol": 1e-7}


def _values_and_grads(backend, circuit: Circuit, x: torch.Tensor, w: torch.Tensor):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = backend(circuit, x, w)
    (out * torch.linspace(0.5, 1.5, out.shape[1], dtype=out.dtype)).sum().backward()
    return out.detach(), x.grad, w.grad


def _reference(circuit: Circuit, x: torch.Tensor, w: torch.Tensor, noise: NoiseModel, readout=None):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = reference_noisy_expvals(circuit, x, w, noise, readout)
    (out * torch.linspace(0.5, 1.5, out.shape[1], dtype=out.dtype)).sum().backward()
    return out.detach(), x.grad, w.grad


def _two_qubit_circuit() -> Circuit:
    gates = (Gate("H", (0,)), Gate("RY", (0,), (inp(0),)), Gate("RX", (1,), (inp(1),)), Gate("CNOT", (0, 1)),
             Gate("Rot", (1,), (weight(0), weight(1), inp(0))), Gate("CRZ", (1, 0), (weight(2),)),
             Gate("IsingXX", (0, 1), (weight(3),)), Gate("PhaseShift", (0,), (const(0.3),)))
    return Circuit(2, 2, (4,), gates, (Observable("Z", (0,)), Observable("X", (1,)), Observable("ZY", (0, 1))))


def _data(circuit: Circuit, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) - 0.5) * 3
    w = torch.randn(circuit.n_weights, generator=g, dtype=torch.float64)
    return x, w


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_each_channel_matches_default_mixed(channel: str) -> None:
    circuit, noise = _two_qubit_circuit(), NoiseModel.parse(f"{channel}=0.07")
    x, w = _data(circuit)
    ours = _values_and_grads(TorchBackend(noise=noise), circuit, x, w)
    theirs = _reference(circuit, x, w, noise)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **MIXED_TOL)


def test_the_density_matrix_path_without_noise_equals_the_statevector_engine_exactly() -> None:
    circuit = _two_qubit_circuit()
    x, w = _data(circuit)
    pure = _values_and_grads(TorchBackend(), circuit, x, w)
    mixed = _values_and_grads(TorchBackend(noise="depolarizing=1e-300"), circuit, x, w)
    for a, b in zip(pure, mixed):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_default_mixed_itself_is_accurate_to_1e_8() -> None:
    circuit = _two_qubit_circuit()
    x, w = _data(circuit)
    gap = (_reference(circuit, x, w, NoiseModel())[0] - TorchBackend()(circuit, x, w)).abs().max()
    assert gap < 1e-7


def test_channels_at_chosen_gates_match_default_mixed() -> None:
    circuit = _two_qubit_circuit()
    noise = NoiseModel.parse("amplitude_damping=0.1@CNOT+CRZ,phase_flip=0.05@RY")
    x, w = _data(circuit)
    for a, b in zip(_values_and_grads(TorchBackend(noise=noise), circuit, x, w), _reference(circuit, x, w, noise)):
        torch.testing.assert_close(a, b, **MIXED_TOL)


def _random_circuit(rng: random.Random, n: int) -> Circuit:
    one = ["H", "X", "S", "RX", "RY", "RZ", "PhaseShift", "Rot"]
    two = ["CNOT", "CZ", "CRX", "CRY", "IsingYY", "IsingZZ"]
    gates, n_w = [], 0
    for _ in range(rng.randint(3, 10)):
        name = rng.choice(one + (two if n > 1 else []))
        wires = tuple(rng.sample(range(n), 2 if name in two else 1))
        k = {"Rot": 3}.get(name, 1 if name.startswith(("R", "C", "I", "P")) and name not in ("CNOT", "CZ") else 0)
        params = []
        for _ in range(k):
            if rng.random() < 0.5:
                params.append(inp(rng.randrange(2)))
            else:
                params.append(weight(n_w))
                n_w += 1
        gates.append(Gate(name, wires, tuple(params)))
    observables = tuple(Observable(rng.choice("XYZ"), (w,)) for w in range(n))
    return Circuit(n, 2, (max(n_w, 1),), tuple(gates), observables)


@pytest.mark.parametrize("seed", range(8))
def test_random_noisy_circuits_match_default_mixed(seed: int) -> None:
    rng = random.Random(seed)
    circuit = _random_circuit(rng, rng.randint(1, 4))
    text = ",".join(f"{c}={rng.uniform(0.01, 0.2):.3f}" for c in rng.sample(sorted(CHANNELS), 2))
    noise = NoiseModel.parse(text)
    x, w = _data(circuit, seed=seed)
    for a, b in zip(_values_and_grads(TorchBackend(noise=noise), circuit, x, w), _reference(circuit, x, w, noise)):
        if a is None or b is None:
            assert a is None or not a.any()
            continue
        assert torch.isfinite(a).all()
        known = torch.isfinite(b)  # default.mixed gives NaN gradients where the output does not depend on an angle
        torch.testing.assert_close(a[known], b[known], **MIXED_TOL)
        assert (a[~known].abs() < 1e-12).all()


def test_symmetric_readout_error_matches_bit_flips_before_measurement() -> None:
    base = _two_qubit_circuit()
    circuit = Circuit(2, 2, (4,), base.gates, (Observable("Z", (0,)), Observable("Z", (1,)), Observable("ZZ", (0, 1))))
    noise = NoiseModel.parse("depolarizing=0.03,readout=0.04")
    x, w = _data(circuit)
    ours = _values_and_grads(TorchBackend(noise=noise), circuit, x, w)
    theirs = _reference(circuit, x, w, NoiseModel.parse("depolarizing=0.03"), readout=0.04)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **MIXED_TOL)


def test_asymmetric_readout_error_follows_its_formula() -> None:
    circuit = make_circuit("tutorial", 3, 2)
    x, w = _data(circuit)
    exact = TorchBackend(diff_method="parameter-shift")(circuit, x, w)
    noisy = TorchBackend(noise="readout=0.02/0.1")(circuit, x, w)
    torch.testing.assert_close(noisy, (1 - 0.02 - 0.1) * exact + (0.1 - 0.02), **TOL)


@pytest.mark.parametrize("text, message", [
    ("depolarising=0.1", "Did you mean 'depolarizing'"), ("bit_flip=1.5", "must lie in"),
    ("bit_flip", "channel=p"), ("readout=a", "needs a number"),
])
def test_bad_noise_settings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NoiseModel.parse(text)


# ------------------------------------------------------------------------------------- shots


@pytest.mark.slow
def test_shot_estimates_converge_as_one_over_root_shots() -> None:
    circuit = make_circuit("tutorial", 3, 2)
    x, w = _data(circuit, batch=1)
    exact = TorchBackend()(circuit, x, w)[0]
    spread = torch.sqrt(1 - exact**2)  # standard deviation of one ±1 outcome
    for shots in (64, 256, 1024, 4096):
        estimates = torch.stack([TorchBackend(shots=shots, seed=s)(circuit, x, w)[0] for s in range(300)])
        rms = (estimates - exact).pow(2).mean(0).sqrt()
        # 300 repetitions: the RMS error is within ~10% of spread / sqrt(shots); allow 25%
        torch.testing.assert_close(rms * math.sqrt(shots), spread, rtol=0.25, atol=0.02)
        assert (estimates.mean(0) - exact).abs().max() < 4 * spread.max() / math.sqrt(shots * 300)


def test_shots_are_seeded() -> None:
    circuit = make_circuit("tutorial", 4, 2)
    x, w = _data(circuit)
    a, b, c = (TorchBackend(shots=100, seed=s)(circuit, x, w) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close((a * 100).round(), a * 100, rtol=0, atol=1e-9)  # frequencies of 100 shots


def _every_parametric_gate() -> Circuit:
    names = ["RX", "RY", "RZ", "PhaseShift", "CRX", "CRY", "CRZ", "IsingXX", "IsingYY", "IsingZZ"]
    gates = [Gate("H", (0,)), Gate("H", (1,)), Gate("H", (2,))]
    for i, name in enumerate(names):
        wires = (i % 3,) if name in ("RX", "RY", "RZ", "PhaseShift") else (i % 3, (i + 1) % 3)
        gates.append(Gate(name, wires, (inp(i % 2) if i % 2 else weight(i),)))
    gates.append(Gate("Rot", (1,), (weight(10), inp(0), weight(11))))
    obs = (Observable("Z", (0,)), Observable("YX", (1, 2)), Observable("X", (2,)))
    return Circuit(3, 2, (12,), tuple(gates), obs)


@pytest.mark.parametrize("circuit", [_every_parametric_gate(), make_circuit("strongly_entangling", 3, 2)],
                         ids=["every-gate", "strongly-entangling"])
def test_parameter_shift_gradients_equal_analytic_ones(circuit: Circuit) -> None:
    x, w = _data(circuit)
    analytic = _values_and_grads(TorchBackend(), circuit, x, w)
    shifted = _values_and_grads(TorchBackend(diff_method="parameter-shift"), circuit, x, w)
    for a, b in zip(analytic, shifted):
        torch.testing.assert_close(a, b, **TOL)


def test_shot_gradients_are_unbiased_estimates_of_the_analytic_ones() -> None:
    circuit = make_circuit("tutorial", 3, 2)
    x, w = _data(circuit, batch=2)
    _, gx, gw = _values_and_grads(TorchBackend(), circuit, x, w)
    runs = [_values_and_grads(TorchBackend(shots=2000, seed=s), circuit, x, w) for s in range(40)]
    mean_w = torch.stack([r[2] for r in runs]).mean(0)
    mean_x = torch.stack([r[1] for r in runs]).mean(0)
    # each gradient entry is a sum of a few shot estimates: its error over 40 x 2000 shots is ~0.01
    torch.testing.assert_close(mean_w, gw, rtol=0, atol=0.05)
    torch.testing.assert_close(mean_x, gx, rtol=0, atol=0.05)
