"""Many models in one engine call: weights (K, n_weights) with inputs (K, B, n_inputs) equal a loop of solo calls."""
from __future__ import annotations

import random

import pytest
import torch
from support.circuits import random_circuit

from qtransfer import Circuit, CompiledCircuit, Gate, Observable, TorchBackend, inp, make_circuit, weight
from qtransfer.errors import InputError
from qtransfer.quantum import fused
from qtransfer.quantum.circuits import TEMPLATES

METHODS = ["dense", "fused", "gates"]


def _data(circuit: Circuit, models: int, batch: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(models, batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)
    w = (torch.rand(models, circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)
    coef = torch.randn(models, batch, circuit.n_outputs, generator=g, dtype=torch.float64).to(dtype)
    return x, w, coef


def _stacked_and_loop(engine: CompiledCircuit, x: torch.Tensor, w: torch.Tensor,
                      coef: torch.Tensor) -> tuple[list, list]:
    """[outputs, d/dinputs, d/dweights] of one stacked call and of a loop of solo calls, for loss sum(coef * out)."""
    results = []
    for stacked in (True, False):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = engine(xs, ws) if stacked else torch.stack([engine(xs[k], ws[k]) for k in range(len(ws))])
        anchor = 0 * (xs.sum() + ws.sum())
        results.append([out.detach(), *torch.autograd.grad((out * coef).sum() + anchor, [xs, ws])])
    return results[0], results[1]


def _assert_equal(ours: list, reference: list, tol: float) -> None:
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("method", METHODS)
def test_every_template_stacked_equals_a_loop_of_solo_calls(template: str, method: str) -> None:
    circuit = make_circuit(template, 4, 3)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method=method)
    for models, batch in [(1, 1), (1, 5), (3, 1), (3, 5)]:
        x, w, coef = _data(circuit, models, batch, torch.float64, seed=models * 10 + batch)
        ours, reference = _stacked_and_loop(engine, x, w, coef)
        assert ours[0].shape == (models, batch, circuit.n_outputs)
        assert ours[2].abs().sum(-1).min() > 1e-3  # every model has its own weight gradient
        _assert_equal(ours, reference, 1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_float32_stacked_agrees_with_the_loop(method: str) -> None:
    circuit = make_circuit("strongly_entangling", 4, 3)
    engine = CompiledCircuit(circuit, dtype=torch.float32, method=method)
    x, w, coef = _data(circuit, 3, 5, torch.float32)
    ours, reference = _stacked_and_loop(engine, x, w, coef)
    assert ours[0].dtype == torch.float32
    _assert_equal(ours, reference, 1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_random_circuits_with_mixed_sources_stack_on_every_path(seed: int) -> None:
    # gates whose parameters mix inputs, weights and constants, complex gates, X/Y/ZZ readout
    circuit = random_circuit(random.Random(100 + seed), n_qubits=2 + seed % 4)
    for method in METHODS:
        engine = CompiledCircuit(circuit, dtype=torch.float64, method=method)
        ours, reference = _stacked_and_loop(engine, *_data(circuit, 3, 2, torch.float64, seed))
        _assert_equal(ours, reference, 1e-12)


def test_per_sample_blocks_and_wide_gates_stack_on_the_fused_path() -> None:
    # inputs between entangling layers make per-row blocks; a CRY across the register is a wide gate
    n = 8
    gates = [Gate("H", (i,)) for i in range(n)]
    gates += [Gate("RY", (i,), (weight(3 + i),)) for i in range(n)]
    gates += [Gate("CNOT", (i, i + 1)) for i in range(n - 1)]
    gates += [Gate("RX", (i,), (inp(i),)) for i in range(n)]
    gates += [Gate("CRY", (0, n - 1), (weight(0),)), Gate("IsingXX", (2, 3), (inp(1),)), Gate("CZ", (1, n - 2))]
    gates += [Gate("Rot", (i,), (weight(1), inp(i), weight(2))) for i in range(n)]
    obs = (Observable("Z", (0,)), Observable("XY", (3, 6)), Observable("ZZ", (1, 7)), Observable("Y", (5,)))
    circuit = Circuit(n, n, (3 + n,), tuple(gates), obs)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method="fused", block_qubits=3)
    ours, reference = _stacked_and_loop(engine, *_data(circuit, 3, 2, torch.float64))
    _assert_equal(ours, reference, 1e-12)


def test_twelve_qubits_fused_stacked_equals_the_loop() -> None:
    circuit = make_circuit("tutorial", 12, 3)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method="fused")
    for models, batch in [(1, 2), (3, 2)]:
        ours, reference = _stacked_and_loop(engine, *_data(circuit, models, batch, torch.float64))
        _assert_equal(ours, reference, 1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_states_of_many_models_equal_solo_states(method: str) -> None:
    circuit = make_circuit("basic_entangler", 3, 2)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method=method)
    x, w, _ = _data(circuit, 3, 4, torch.float64)
    states = engine.state(x, w)
    assert states.shape == (3, 4, 2, 2, 2)
    torch.testing.assert_close(states, torch.stack([engine.state(x[k], w[k]) for k in range(3)]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_a_circuit_without_inputs_gives_one_row_per_model(method: str) -> None:
    gates = (Gate("RY", (0,), (weight(0),)), Gate("CNOT", (0, 1)), Gate("RX", (1,), (weight(1),)))
    circuit = Circuit(2, 0, (2,), gates, (Observable("Z", (0,)), Observable("Z", (1,))))
    engine = CompiledCircuit(circuit, dtype=torch.float64, method=method)
    w = torch.tensor([[0.3, 0.0], [1.1, 0.7], [2.0, -0.4]], dtype=torch.float64, requires_grad=True)
    out = engine(None, w)
    assert out.shape == (3, 1, 2)
    # <Z0> = cos(a), <Z1> = cos(a) cos(b) for RY(a) on wire 0, CNOT, RX(b) on wire 1
    torch.testing.assert_close(out[:, 0, 0], torch.cos(w[:, 0]), atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, 0, 1], torch.cos(w[:, 0]) * torch.cos(w[:, 1]), atol=1e-12, rtol=0)
    (gw,) = torch.autograd.grad(out[:, 0, 1].sum(), [w])
    expected = torch.stack([-torch.sin(w[:, 0]) * torch.cos(w[:, 1]), -torch.cos(w[:, 0]) * torch.sin(w[:, 1])], 1)
    torch.testing.assert_close(gw, expected, atol=1e-12, rtol=0)
    assert engine(torch.zeros(3, 4, 0, dtype=torch.float64), w).shape == (3, 4, 2)
    one = engine(torch.zeros(1, 4, 0, dtype=torch.float64), w[:1])
    assert one.shape == (1, 4, 2)
    torch.testing.assert_close(one, out[:1].expand(1, 4, 2), atol=1e-12, rtol=0)


def test_gradient_free_runs_in_chunks_equal_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    circuit = make_circuit("strongly_entangling", 8, 2)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method="fused")
    x, w, _ = _data(circuit, 3, 5, torch.float64)
    whole = engine(x, w)
    monkeypatch.setattr(fused, "EVAL_AMPLITUDES", 2**8 * 2)  # two samples at a time: chunks cut across models
    with torch.no_grad():
        torch.testing.assert_close(engine(x, w), whole, atol=1e-12, rtol=0)


def test_solo_weights_in_the_circuits_own_shape_still_mean_one_model() -> None:
    circuit = make_circuit("tutorial", 4, 1)  # weight_shape (1, 4): a (1, 4) tensor is one model's weights
    engine = CompiledCircuit(circuit, dtype=torch.float64)
    x = torch.rand(5, 4, dtype=torch.float64)
    w = torch.rand(1, 4, dtype=torch.float64)
    torch.testing.assert_close(engine(x, w), engine(x, w.reshape(-1)), atol=0, rtol=0)
    assert engine(x[None], w).shape == (1, 5, 4)


def test_mismatched_model_counts_and_refusing_backends_say_what_to_pass() -> None:
    circuit = make_circuit("tutorial", 4, 2)
    engine = CompiledCircuit(circuit)
    with pytest.raises(InputError, match=r"\(models, n_weights\) = \(3, 8\)"):
        engine(torch.zeros(3, 2, 4), torch.zeros(2, 8))
    with pytest.raises(InputError, match=r"\(models, batch, 4\)"):
        engine(torch.zeros(3, 2, 5), torch.zeros(3, 8))
    with pytest.raises(InputError, match="once per model"):
        TorchBackend(shots=100)(circuit, torch.zeros(3, 2, 4), torch.zeros(3, 8))


def test_torch_backend_passes_stacked_weights_through_and_per_sample_agrees() -> None:
    circuit = make_circuit("tutorial", 4, 2)
    x, w, _ = _data(circuit, 3, 4, torch.float64)
    batched, per_sample = TorchBackend()(circuit, x, w), TorchBackend(per_sample=True)(circuit, x, w)
    assert batched.shape == (3, 4, 4)
    torch.testing.assert_close(per_sample, batched, atol=1e-12, rtol=0)


def test_large_states_run_one_model_after_another_with_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    circuit = make_circuit("strongly_entangling", 7, 2)
    engine = CompiledCircuit(circuit, dtype=torch.float64, method="fused")
    x, w, coef = _data(circuit, 3, 2, torch.float64)
    grouped, _ = _stacked_and_loop(engine, x, w, coef)
    monkeypatch.setattr(fused, "STACK_MAX_AMPLITUDES", 0)
    one_by_one, _ = _stacked_and_loop(engine, x, w, coef)
    _assert_equal(one_by_one, grouped, 1e-12)
    assert engine.state(x, w).shape == (3, 2) + (2,) * 7
