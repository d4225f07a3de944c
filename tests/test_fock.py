"""The Fock-basis simulator against closed forms, against exponentials in a much larger truncation, and
against PennyLane's default.gaussian (values and gradients, float64)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qtransfer.quantum import fock_gates as gates
from qtransfer.quantum.fock import FockState

F64 = torch.float64
C128 = torch.complex128


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def ladder(cutoff: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.diag(torch.arange(1, cutoff, dtype=F64).sqrt(), 1).to(C128)
    return a, a.conj().T


def low_block_of_expm(generator: torch.Tensor, k: int) -> torch.Tensor:
    return torch.linalg.matrix_exp(generator)[:k, :k]


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("r,phi", [(0.0, 0.0), (0.5, 0.3), (1.4, -2.0), (-0.8, 1.0), (2.5, 0.7)])
def test_a_displaced_vacuum_is_a_coherent_state_with_poisson_statistics(r: float, phi: float) -> None:
    cutoff = 45
    state = FockState.vacuum(1, cutoff, dtype=C128).displace(r, phi, 0)
    alpha = r * complex(math.cos(phi), math.sin(phi))
    n = np.arange(cutoff)
    amplitudes = np.exp(-abs(alpha) ** 2 / 2) * np.array([alpha**k / math.sqrt(math.factorial(k)) for k in n])
    np.testing.assert_allclose(state.ket[0].numpy(), amplitudes, atol=1e-13)
    poisson = np.exp(-(r**2)) * np.array([r ** (2 * k) / math.factorial(k) for k in n])
    np.testing.assert_allclose(state.probabilities()[0].numpy(), poisson, atol=1e-13)
    assert state.mean_photon(0).item() == pytest.approx(r**2, abs=1e-10)
    assert state.quadrature(0).item() == pytest.approx(2 * alpha.real, abs=1e-10)  # <x> = sqrt(2ħ) Re α
    assert state.quadrature(0, math.pi / 2).item() == pytest.approx(2 * alpha.imag, abs=1e-10)


@pytest.mark.parametrize("r,phi", [(0.3, 0.0), (0.8, 1.1), (-0.5, 0.4)])
def test_squeezed_vacuum_has_the_known_even_photon_distribution(r: float, phi: float) -> None:
    cutoff = 40
    p = FockState.vacuum(1, cutoff, dtype=C128).squeeze(r, phi, 0).probabilities()[0].numpy()
    expected = np.zeros(cutoff)
    for k in range(cutoff // 2):
        expected[2 * k] = math.tanh(abs(r)) ** (2 * k) * math.factorial(2 * k) / (
            4**k * math.factorial(k) ** 2 * math.cosh(r))
    np.testing.assert_allclose(p, expected, atol=1e-13)
    assert p[1::2].max() == 0
    mean = FockState.vacuum(1, cutoff, dtype=C128).squeeze(r, phi, 0).mean_photon(0).item()
    assert mean == pytest.approx(float(np.arange(cutoff) @ expected), abs=1e-12)
    assert mean == pytest.approx(math.sinh(r) ** 2, abs=1e-5)  # the rest sits above the cutoff


def test_the_beam_splitter_conserves_photon_number_and_mixes_one_photon_as_cos_and_sin() -> None:
    cutoff, theta, phi = 8, 0.7, 0.4
    u = gates.beamsplitter(t(theta), t(phi), cutoff)
    p, q, m, n = np.indices((cutoff,) * 4)
    assert u.abs().numpy()[p + q != m + n].max() == 0
    out = FockState.fock([1, 0], cutoff, dtype=C128).beamsplitter(theta, phi).ket[0]
    assert out[1, 0].item() == pytest.approx(math.cos(theta))
    assert out[0, 1].item() == pytest.approx(math.sin(theta) * complex(math.cos(phi), math.sin(phi)))
    for photons in [(3, 2), (0, 7), (4, 3)]:  # total below the cutoff: nothing leaks
        state = FockState.fock(list(photons), cutoff, dtype=C128).beamsplitter(theta, phi)
        assert state.norm().item() == pytest.approx(1.0, abs=1e-13)
        assert (state.mean_photon(0) + state.mean_photon(1)).item() == pytest.approx(sum(photons), abs=1e-12)


def test_kerr_on_a_coherent_state_keeps_its_photon_statistics_and_matches_the_closed_form_of_a() -> None:
    cutoff, alpha, kappa = 40, 1.2, 0.3
    coherent = FockState.vacuum(1, cutoff, dtype=C128).displace(alpha, 0.0, 0)
    state = coherent.kerr(kappa, 0)
    torch.testing.assert_close(state.probabilities(), coherent.probabilities())
    expected = alpha * np.exp(1j * kappa) * np.exp(alpha**2 * (np.exp(2j * kappa) - 1))
    assert complex(state.lowering(0).item()) == pytest.approx(complex(expected), abs=1e-12)


def test_rotation_turns_a_coherent_amplitude() -> None:
    state = FockState.vacuum(1, 30, dtype=C128).displace(1.0, 0.2, 0).rotate(0.5, 0)
    assert complex(state.lowering(0).item()) == pytest.approx(complex(math.cos(0.7), math.sin(0.7)), abs=1e-12)


# ------------------------------------------------------------------ exact elements, not a truncated exponential


def test_single_mode_elements_equal_the_exponential_of_a_huge_truncation_on_the_low_block() -> None:
    big, k = 160, 10
    a, ad = ladder(big)
    alpha = 0.9 * complex(math.cos(0.3), math.sin(0.3))
    z = 0.6 * complex(math.cos(-0.5), math.sin(-0.5))
    x = a + ad  # x̂ with ħ = 2
    cases = [
        (gates.displacement(t(0.9), t(0.3), k), alpha * ad - alpha.conjugate() * a),
        (gates.squeezing(t(0.6), t(-0.5), k), (z.conjugate() * a @ a - z * ad @ ad) / 2),
        (gates.cubic_phase(t(0.4), k), 1j * 0.4 * (x @ x @ x) / 6),
    ]
    for exact, generator in cases:
        torch.testing.assert_close(exact, low_block_of_expm(generator, k), atol=1e-10, rtol=0)


def test_a_truncated_exponential_at_the_working_cutoff_is_what_we_avoid() -> None:
    k = 11
    a, ad = ladder(k)
    x = a + ad
    truncated = torch.linalg.matrix_exp(1j * 0.4 * (x @ x @ x) / 6)
    assert (truncated[:4, :4] - gates.cubic_phase(t(0.4), k)[:4, :4]).abs().max() > 1e-3


# written by benchmarks/qq_strawberryfields_reference.py
REFERENCE = Path(__file__).parent / "reference" / "qq_strawberryfields.json"


def test_the_truncated_convention_is_strawberry_fields_gate_and_far_from_the_exact_one() -> None:
    reference = json.loads(REFERENCE.read_text())
    for cutoff, by_gamma in reference["cubic_phase"].items():
        for gamma, m in by_gamma.items():
            theirs = torch.tensor(np.array(m["real"]) + 1j * np.array(m["imag"]))
            ours = gates.cubic_phase_gate(t(float(gamma)), int(cutoff), "truncated")
            torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
            # unitary on the kept space, yet far from the true gate's elements there
            torch.testing.assert_close(ours @ ours.conj().T, torch.eye(int(cutoff), dtype=C128), atol=1e-12, rtol=0)
            assert (ours - gates.cubic_phase_gate(t(float(gamma)), int(cutoff), "exact")).abs().max() > 0.3
    # the exact gate is the same at every cutoff; the truncated one changes with it
    small, large = (gates.cubic_phase_gate(t(0.8), c, "truncated")[:6, :6] for c in (15, 25))
    assert (small - large).abs().max() > 1e-2
    torch.testing.assert_close(gates.cubic_phase(t(0.8), 15)[:6, :6], gates.cubic_phase(t(0.8), 25)[:6, :6],
                               atol=1e-11, rtol=0)
    with pytest.raises(ValueError, match="exact, truncated"):
        gates.cubic_phase_gate(t(0.1), 5, "taylor")


def test_the_exact_cubic_phase_grid_is_converged_at_its_default_size() -> None:
    gamma = torch.tensor([1.0, -0.6, 2.0], dtype=F64)
    for cutoff in (15, 35):
        torch.testing.assert_close(gates.cubic_phase(gamma, cutoff), gates.cubic_phase(gamma, cutoff, points=8193),
                                   atol=1e-11, rtol=0)


def test_stacked_models_apply_their_own_parameters_to_their_own_group() -> None:
    k, per = 3, 2  # three parameter sets, two kets each
    r = torch.tensor([0.2, -0.4, 0.7], dtype=F64)
    start = FockState.vacuum(2, 8, batch=k * per, dtype=C128).displace(torch.linspace(0.1, 0.6, k * per,
                                                                                      dtype=F64), 0.3, 0)
    stacked = FockState(start.ket, models=k).squeeze(r, 0.1, 0).rotate(r, 1).beamsplitter(r, 0.2)
    stacked = stacked.cubic_phase(r / 2, 1, "truncated").kerr(0.05, 0)
    for m in range(k):
        one = FockState(start.ket[m * per:(m + 1) * per]).squeeze(r[m], 0.1, 0).rotate(r[m], 1)
        one = one.beamsplitter(r[m], 0.2).cubic_phase(r[m] / 2, 1, "truncated").kerr(0.05, 0)
        torch.testing.assert_close(stacked.ket[m * per:(m + 1) * per], one.ket, atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match="equal groups"):
        FockState(start.ket, models=4)


@pytest.mark.slow
def test_beam_splitter_elements_equal_the_two_mode_exponential() -> None:
    c, big = 6, 24
    a, _ = ladder(big)
    eye = torch.eye(big, dtype=C128)
    a1, a2 = torch.kron(a, eye), torch.kron(eye, a)
    theta, phi = 0.8, -0.6
    generator = theta * (complex(math.cos(phi), math.sin(phi)) * a1 @ a2.conj().T
                         - complex(math.cos(phi), -math.sin(phi)) * a1.conj().T @ a2)
    full = torch.linalg.matrix_exp(generator).reshape(big, big, big, big)[:c, :c, :c, :c]
    torch.testing.assert_close(gates.beamsplitter(t(theta), t(phi), c), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["displacement", "squeezing", "beamsplitter", "cubic_phase"])
def test_gates_are_unitary_on_states_that_stay_below_the_cutoff(name: str) -> None:
    cutoff = 30
    state = FockState.vacuum(2, cutoff, dtype=C128).displace(0.4, 0.1, 0).squeeze(0.2, 0.3, 1)
    state = {
        "displacement": lambda s: s.displace(0.5, -0.4, 1),
        "squeezing": lambda s: s.squeeze(0.3, 0.9, 0),
        "beamsplitter": lambda s: s.beamsplitter(1.1, 0.2),
        "cubic_phase": lambda s: s.cubic_phase(0.1, 0),
    }[name](state)
    assert state.norm().item() == pytest.approx(1.0, abs=1e-8)


# ------------------------------------------------------------------ against PennyLane's default.gaussian


def _random_gaussian_program(modes: int,
                             rng: np.random.Generator) -> list[tuple[str, tuple[float, ...], tuple[int, ...]]]:
    program = []
    for m in range(modes):
        program.append(("Displacement", (rng.uniform(0.1, 0.6), rng.uniform(-3, 3)), (m,)))
        program.append(("Squeezing", (rng.uniform(-0.3, 0.3), rng.uniform(-3, 3)), (m,)))
    program.extend(("Beamsplitter", (rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)), (m, m + 1)) for m in range(modes - 1))
    program.extend(("Rotation", (rng.uniform(-3, 3),), (m,)) for m in range(modes))
    if modes > 1:
        program.append(("Beamsplitter", (rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)), (0, modes - 1)))
    return program


def _ours(program: list, params: list[torch.Tensor], modes: int, cutoff: int) -> FockState:
    state = FockState.vacuum(modes, cutoff, dtype=C128)
    for (name, _, wires), p in zip(program, params):
        if name == "Displacement":
            state = state.displace(p[0], p[1], wires[0])
        elif name == "Squeezing":
            state = state.squeeze(p[0], p[1], wires[0])
        elif name == "Rotation":
            state = state.rotate(p[0], wires[0])
        else:
            state = state.beamsplitter(p[0], p[1], wires)
    return state


def _pennylane(program: list, observable: object, modes: int) -> object:
    import pennylane as qml

    dev = qml.device("default.gaussian", wires=modes)

    @qml.qnode(dev, diff_method="parameter-shift")
    def circuit(*flat: float) -> object:
        i = 0
        for name, values, wires in program:
            getattr(qml, name)(*flat[i:i + len(values)], wires=list(wires))
            i += len(values)
        return qml.expval(observable)

    return circuit


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("modes", [1, 2, 3])
def test_gaussian_circuits_match_default_gaussian_in_values_and_gradients(modes: int) -> None:
    qml = pytest.importorskip("pennylane")
    from pennylane import numpy as pnp

    cutoff = {1: 30, 2: 22, 3: 14}[modes]
    rng = np.random.default_rng(modes)
    program = _random_gaussian_program(modes, rng)
    flat = [v for _, values, _ in program for v in values]
    observables = []
    for m in range(modes):
        observables += [("n", m, qml.NumberOperator(m)), ("x", m, qml.QuadX(m)), ("p", m, qml.QuadP(m))]
    photons = [[1] + [0] * (modes - 1), [0] * modes, [0] * (modes - 1) + [2]]
    observables += [("fock", tuple(n), qml.FockStateProjector(np.array(n), wires=list(range(modes)))) for n in photons]
    for kind, where, observable in observables:
        params = [torch.tensor(values, dtype=F64, requires_grad=True) for _, values, _ in program]
        state = _ours(program, params, modes, cutoff)
        if kind == "n":
            value = state.mean_photon(where).sum()
        elif kind == "fock":
            value = state.probabilities()[(0, *where)]
        else:
            value = state.quadrature(where, 0.0 if kind == "x" else math.pi / 2).sum()
        value.backward()
        ours_grad = torch.cat([p.grad for p in params]).numpy()
        circuit = _pennylane(program, observable, modes)
        args = [pnp.array(v, requires_grad=True) for v in flat]
        reference = float(circuit(*args))
        reference_grad = np.array(qml.grad(circuit)(*args), dtype=float)
        assert value.item() == pytest.approx(reference, abs=1e-8), (kind, where)
        np.testing.assert_allclose(ours_grad, reference_grad, atol=1e-7, err_msg=f"{kind} {where}")


# ------------------------------------------------------------------ batching, dtype, errors


def test_a_batch_of_parameters_equals_one_state_at_a_time_and_float32_tracks_float64() -> None:
    r = torch.tensor([0.1, 0.5, 1.0], dtype=F64)
    batched = FockState.vacuum(2, 12, batch=3, dtype=C128).displace(r, 0.4, 0).squeeze(r / 3, 0.1, 1)
    batched = batched.beamsplitter(r, 0.2).kerr(r / 5, 1).cubic_phase(r / 10, 0)
    for i in range(3):
        one = FockState.vacuum(2, 12, dtype=C128).displace(r[i], 0.4, 0).squeeze(r[i] / 3, 0.1, 1)
        one = one.beamsplitter(r[i], 0.2).kerr(r[i] / 5, 1).cubic_phase(r[i] / 10, 0)
        torch.testing.assert_close(batched.ket[i], one.ket[0])
    single = FockState.vacuum(2, 12, batch=3).displace(r.float(), 0.4, 0).squeeze(r.float() / 3, 0.1, 1)
    single = single.beamsplitter(r.float(), 0.2).kerr(r.float() / 5, 1).cubic_phase(r.float() / 10, 0)
    assert single.ket.dtype == torch.complex64
    torch.testing.assert_close(single.ket.to(C128), batched.ket, atol=2e-5, rtol=0)


def test_bad_sizes_are_refused_with_the_allowed_range() -> None:
    with pytest.raises(ValueError, match="1 to 3 modes"):
        FockState.vacuum(4, 5)
    with pytest.raises(ValueError, match="below the cutoff"):
        FockState.fock([5], 5)
    with pytest.raises(ValueError, match="two different modes"):
        FockState.vacuum(2, 5).beamsplitter(0.1, 0.1, (1, 1))
