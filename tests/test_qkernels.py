"""Quantum kernels: embedded states by the engine, fidelity and projected Gram matrices, shot estimates, noise."""
from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest
import torch
from support.pennylane_reference import QML_CHANNELS

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import (
    Circuit,
    Gate,
    Observable,
    const,
    inp,
    make_circuit,
)
from qtransfer.quantum.compute_uncompute import compute_uncompute, noisy_fidelity_kernel
from qtransfer.quantum.density import NoiseModel
from qtransfer.quantum.embeddings import EMBEDDINGS, embedding_states, make_embedding
from qtransfer.quantum.gram import (
    bloch_vectors,
    estimate_from_shots,
    fidelity_kernel,
    projected_kernel,
)
from qtransfer.quantum.statevector import CompiledCircuit

TOL = 1e-10
PAULIS = [np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1.0, -1.0])]


def _angles(n_samples: int, n_qubits: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_samples, n_qubits, generator=g, dtype=torch.float64) * 2 * math.pi


def _pennylane_embedding(name: str, n_qubits: int):
    """The embedding written with PennyLane's own operations (IQPEmbedding itself for "iqp")."""
    wires = list(range(n_qubits))

    def embed(x):
        if name == "iqp":
            qml.IQPEmbedding(x, wires=wires, n_repeats=2)
        else:
            for w in wires:
                qml.Hadamard(w)
                qml.RY(x[w], wires=w)

    return embed


def _pennylane_kernel(name: str, n_qubits: int):
    """PennyLane's documented kernel: probs[0] of embed(x) then adjoint(embed)(y)."""
    embed = _pennylane_embedding(name, n_qubits)

    @qml.qnode(qml.device("default.qubit", wires=n_qubits))
    def circuit(x, y):
        embed(x)
        qml.adjoint(embed)(y)
        return qml.probs(wires=range(n_qubits))

    return lambda x, y: circuit(x, y)[0]


def _gram(name: str, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    emb = make_embedding(name, a.shape[1])
    states = embedding_states(emb, a)
    return fidelity_kernel(states, states if b is None else embedding_states(emb, b))


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
@pytest.mark.parametrize("n_qubits", [2, 3, 4])
def test_the_fidelity_gram_matrix_equals_pennylanes_square_kernel_matrix(name: str, n_qubits: int) -> None:
    x = _angles(5, n_qubits, seed=n_qubits)
    reference = qml.kernels.square_kernel_matrix(x.numpy(), _pennylane_kernel(name, n_qubits))
    ours = _gram(name, x)
    np.testing.assert_allclose(ours.numpy(), reference, atol=TOL, rtol=0)
    assert np.abs(reference - np.eye(5)).max() > 0.1  # the entries are not trivially 0 or 1


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
def test_a_gram_matrix_between_two_sets_equals_pennylanes_kernel_matrix(name: str) -> None:
    a, b = _angles(4, 3, seed=1), _angles(3, 3, seed=2)
    reference = qml.kernels.kernel_matrix(a.numpy(), b.numpy(), _pennylane_kernel(name, 3))
    ours = _gram(name, a, b)
    assert ours.shape == (4, 3) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), reference, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
def test_gram_matrices_are_symmetric_positive_semidefinite_with_unit_diagonal(name: str) -> None:
    x = _angles(40, 5, seed=3) * 0.3
    k = _gram(name, x)
    torch.testing.assert_close(k, k.T, atol=1e-14, rtol=0)
    torch.testing.assert_close(k.diagonal(), torch.ones(40, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.linalg.eigvalsh(k).min() >= -TOL
    assert 0.05 < k[~torch.eye(40, dtype=torch.bool)].mean() < 0.95


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
def test_states_at_nine_qubits_equal_pennylanes_whatever_the_chunks_and_precision(name: str) -> None:
    emb = make_embedding(name, 9)  # the fused engine path
    assert emb.method == "fused"
    x = _angles(7, 9, seed=4)
    states = embedding_states(emb, x)
    assert states.shape == (7, 2**9)
    embed = _pennylane_embedding(name, 9)

    @qml.qnode(qml.device("default.qubit", wires=9))
    def state(v):
        embed(v)
        return qml.state()

    for ours, v in zip(states[:2], x[:2].numpy()):
        np.testing.assert_allclose(ours.numpy(), state(v), atol=TOL, rtol=0)
    torch.testing.assert_close(embedding_states(emb, x, chunk=3), states, atol=1e-13, rtol=0)
    single = embedding_states(emb, x, dtype=torch.complex64)
    assert single.dtype == (torch.float32 if name == "tutorial" else torch.complex64)  # tutorial's gates are real
    torch.testing.assert_close(single.to(states.dtype), states, atol=1e-4, rtol=0)
    torch.testing.assert_close(fidelity_kernel(states, states, chunk=2), fidelity_kernel(states, states),
                               atol=1e-14, rtol=0)


def test_the_tutorial_embedding_is_the_reference_circuit_without_its_layers() -> None:
    emb = make_embedding("tutorial", 4)
    assert emb.circuit.gates == make_circuit("tutorial", 4, 0).gates
    assert embedding_states(emb, _angles(3, 4)).dtype == torch.float64  # H and RY are real: real states


def test_embeddings_refuse_unknown_names_and_wrong_feature_shapes() -> None:
    assert {"tutorial", "iqp"} <= set(EMBEDDINGS)
    with pytest.raises(InputError, match="Did you mean 'iqp'"):
        make_embedding("iqpp", 3)
    with pytest.raises(InputError, match=r"shape \(N, 3\).*PCA"):
        embedding_states(make_embedding("iqp", 3), _angles(2, 4))
    with pytest.raises(InputError, match="same qubits"):
        fidelity_kernel(torch.ones(2, 4), torch.ones(2, 8))


def _pennylane_reduced_states(state: np.ndarray, n_qubits: int) -> list[np.ndarray]:
    """Each qubit's reduced density matrix of a state vector, from PennyLane."""
    @qml.qnode(qml.device("default.qubit", wires=n_qubits))
    def reduced(k):
        qml.StatePrep(state, wires=range(n_qubits))
        return qml.density_matrix(wires=k)

    return [np.asarray(reduced(k)) for k in range(n_qubits)]


def _random_states(n_samples: int, n_qubits: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    psi = torch.randn(n_samples, 2**n_qubits, generator=g, dtype=torch.complex128)
    return psi / psi.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n_qubits", [1, 3])
def test_bloch_vectors_are_pennylanes_one_qubit_reduced_density_matrices(n_qubits: int) -> None:
    states = torch.cat([_random_states(3, n_qubits, seed=n_qubits),
                        embedding_states(make_embedding("iqp", n_qubits), _angles(2, n_qubits)),
                        embedding_states(make_embedding("tutorial", n_qubits),
                                         _angles(2, n_qubits)).to(torch.complex128)])
    bloch = bloch_vectors(states.reshape((-1,) + (2,) * n_qubits))
    assert bloch.shape == (7, n_qubits, 3)
    for psi, b in zip(states.numpy(), bloch.numpy()):
        for k, rho in enumerate(_pennylane_reduced_states(psi, n_qubits)):
            ours = (np.eye(2) + sum(c * p for c, p in zip(b[k], PAULIS))) / 2
            np.testing.assert_allclose(ours, rho, atol=TOL, rtol=0)
    real = embedding_states(make_embedding("tutorial", n_qubits), _angles(2, n_qubits))
    torch.testing.assert_close(bloch_vectors(real), bloch[5:], atol=1e-14, rtol=0)  # real states give the same


def test_the_projected_kernel_is_huang_et_als_on_pennylanes_reduced_states() -> None:
    states = _random_states(6, 3, seed=7)
    reduced = [_pennylane_reduced_states(psi, 3) for psi in states.numpy()]
    gamma = 0.7
    reference = np.array([[math.exp(-gamma * sum(np.linalg.norm(ra - rb, "fro") ** 2 for ra, rb in zip(a, b)))
                           for b in reduced] for a in reduced])
    bloch = bloch_vectors(states)
    ours = projected_kernel(bloch, bloch, gamma)
    np.testing.assert_allclose(ours.numpy(), reference, atol=TOL, rtol=0)
    np.testing.assert_allclose(projected_kernel(bloch[:2], bloch[2:], gamma).numpy(), reference[:2, 2:],
                               atol=TOL, rtol=0)
    with pytest.raises(InputError, match="gamma must be a positive"):
        projected_kernel(bloch, bloch, 0.0)


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
def test_projected_gram_matrices_are_symmetric_positive_semidefinite_with_unit_diagonal(name: str) -> None:
    bloch = bloch_vectors(embedding_states(make_embedding(name, 4), _angles(40, 4, seed=8)))
    k = projected_kernel(bloch, bloch, gamma=0.5)
    assert torch.equal(k, k.T)
    assert torch.equal(k.diagonal(), torch.ones(40, dtype=torch.float64))
    assert torch.linalg.eigvalsh(k).min() >= -TOL
    assert 0.05 < k[~torch.eye(40, dtype=torch.bool)].mean() < 0.95


def _kernel_with_spread_entries(n: int = 60) -> torch.Tensor:
    return _gram("tutorial", _angles(n, 2, seed=9))


def test_shot_estimates_are_unbiased_frequencies_of_the_all_zeros_outcome() -> None:
    k = _kernel_with_spread_entries(20)
    shots, repeats = 50, 400
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([estimate_from_shots(k, shots, g) for _ in range(repeats)])
    assert ((draws * shots) - (draws * shots).round()).abs().max() < 1e-9  # counts out of `shots`
    sd = (k * (1 - k) / (shots * repeats)).sqrt()
    error = draws.mean(0) - k
    assert (error.abs() <= 5 * sd + 1e-12).all()
    assert error.mean().abs() <= 4 * sd.pow(2).sum().sqrt() / k.numel()
    # the spread is the binomial one: the estimates are not exact values plus a tiny noise
    torch.testing.assert_close(draws.var(0).mean(), (k * (1 - k) / shots).mean(), rtol=0.1, atol=0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_shot_errors_shrink_as_one_over_the_square_root_of_the_shots(symmetric: bool) -> None:
    k = _kernel_with_spread_entries(60)
    g = torch.Generator().manual_seed(1)
    rms = [(estimate_from_shots(k, shots, g, symmetric=symmetric) - k).pow(2).mean().sqrt() for shots in (64, 1024)]
    assert 3 <= rms[0] / rms[1] <= 5.3
    off = ~torch.eye(60, dtype=torch.bool)
    expected = (k * (1 - k))[off].mean().sqrt() / 8 * math.sqrt(off.float().mean())
    torch.testing.assert_close(rms[0], expected, rtol=0.15, atol=0)


def test_a_symmetric_gram_matrix_is_measured_once_per_pair_with_a_unit_diagonal() -> None:
    k = _kernel_with_spread_entries(30)
    est = estimate_from_shots(k, 100, torch.Generator().manual_seed(2), symmetric=True)
    assert torch.equal(est, est.T)
    assert torch.equal(est.diagonal(), torch.ones(30, dtype=torch.float64))
    again = estimate_from_shots(k, 100, torch.Generator().manual_seed(2), symmetric=True)
    other = estimate_from_shots(k, 100, torch.Generator().manual_seed(3), symmetric=True)
    assert torch.equal(est, again) and not torch.equal(est, other)
    plain = estimate_from_shots(k, 100, torch.Generator().manual_seed(2))
    assert not torch.equal(plain, plain.T)  # without `symmetric` every entry is its own measurement
    with pytest.raises(InputError, match="must be square"):
        estimate_from_shots(k[:5], 100, torch.Generator(), symmetric=True)
    with pytest.raises(InputError, match="shots must be"):
        estimate_from_shots(k, 0, torch.Generator())


NOISE = "depolarizing=0.02,amplitude_damping=0.05@H,phase_damping=0.04@IsingZZ+RY,readout=0.03"
PENNYLANE_NAMES = {"Hadamard": "H", "MultiRZ": "IsingZZ"}


def _pennylane_noisy_kernel(name: str, n_qubits: int, noise: NoiseModel):
    """probs[0] on default.mixed: the embedding's gates (IQPEmbedding's own decomposition), then PennyLane's adjoint
    of each in reverse order, every gate followed by the model's channels, readout error as bit flips."""
    embed = _pennylane_embedding(name, n_qubits)

    def gates(x):
        with qml.QueuingManager.stop_recording():
            ops = qml.tape.make_qscript(embed)(x).operations
            return [g for op in ops for g in (op.decomposition() if op.name == "IQPEmbedding" else [op])]

    def with_noise(op, base):
        qml.apply(op)
        gate = Gate(PENNYLANE_NAMES.get(base.name, base.name), tuple(range(len(op.wires))))
        for rule in noise.rules:
            if rule.applies_to(gate):
                for w in op.wires:
                    QML_CHANNELS[rule.channel](rule.p, wires=w)

    @qml.qnode(qml.device("default.mixed", wires=n_qubits))
    def circuit(x, y):
        for op in gates(x):
            with_noise(op, op)
        for op in reversed(gates(y)):
            with qml.QueuingManager.stop_recording():
                inverse = qml.adjoint(op)
            with_noise(inverse, op)
        for w in range(n_qubits):
            qml.BitFlip(noise.readout[0], wires=w)
        return qml.probs(wires=range(n_qubits))

    return lambda x, y: circuit(x, y)[0]


@pytest.mark.parametrize("name", ["tutorial", "iqp"])
@pytest.mark.parametrize("n_qubits", [2, 3])
def test_the_noisy_kernel_equals_pennylanes_compute_uncompute_circuit_on_default_mixed(name: str,
                                                                                      n_qubits: int) -> None:
    noise = NoiseModel.parse(NOISE)
    a, b = _angles(3, n_qubits, seed=10), _angles(2, n_qubits, seed=11)
    reference = qml.kernels.kernel_matrix(a.numpy(), b.numpy(), _pennylane_noisy_kernel(name, n_qubits, noise))
    ours = noisy_fidelity_kernel(make_embedding(name, n_qubits), a, b, noise, chunk=4)
    np.testing.assert_allclose(ours.numpy(), reference, atol=TOL, rtol=0)


def test_without_noise_the_compute_uncompute_kernel_is_the_fidelity_kernel_and_noise_lowers_the_diagonal() -> None:
    emb, x = make_embedding("iqp", 3), _angles(5, 3, seed=12)
    exact = fidelity_kernel(embedding_states(emb, x), embedding_states(emb, x))
    torch.testing.assert_close(noisy_fidelity_kernel(emb, x, x, NoiseModel.parse("")), exact, atol=1e-13, rtol=0)
    noisy = noisy_fidelity_kernel(emb, x, x, NoiseModel.parse("depolarizing=0.01"))
    assert (noisy.diagonal() < 0.99).all() and (noisy.diagonal() > 0.5).all()
    assert (noisy - exact).abs().max() > 0.01


def test_the_inverse_of_a_gate_sequence_undoes_it() -> None:
    gates = (Gate("H", (0,)), Gate("S", (1,)), Gate("T", (0,)), Gate("Rot", (1,), (inp(0), inp(1), const(0.3))),
             Gate("CRX", (0, 1), (inp(2),)), Gate("IsingXX", (1, 0), (const(-0.7),)), Gate("CNOT", (1, 0)))
    circuit = Circuit(2, 3, (0,), gates, (Observable("Z", (0,)),))
    both = compute_uncompute(circuit)
    x = _angles(4, 3, seed=13)
    states = CompiledCircuit(both, dtype=torch.float64, method="gates").state(torch.cat([x, -x], 1), torch.empty(0))
    # U(x)^dagger U(x)|00> = |00>, and U(y)^dagger U(x) is not the identity for y != x
    torch.testing.assert_close(states.reshape(4, 4)[:, 0].abs(), torch.ones(4, dtype=torch.float64), atol=1e-12, rtol=0)
    other = CompiledCircuit(both, dtype=torch.float64, method="gates").state(torch.cat([x, -x.flip(0)], 1),
                                                                             torch.empty(0))
    assert (other.reshape(4, 4)[:, 0].abs() < 0.999).all()
    with pytest.raises(InputError, match="without trainable weights"):
        compute_uncompute(make_circuit("tutorial", 2, 1))
