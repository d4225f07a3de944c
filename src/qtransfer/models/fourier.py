"""The `fourier` head: a classical control for the quantum head's circuit. Under angle encoding, every output of a
variational circuit is a trigonometric polynomial of its inputs whose frequencies the encoding alone fixes (Schuld,
Sweke & Meyer 2021); a linear model on those frequencies' cosines and sines (random Fourier features, Landman et al.
arXiv:2210.13200; Schreiber et al. PRL 2023) is the classical surrogate of the same spectrum. Where it matches the
quantum head, the circuit's accuracy is the spectrum's, not something only a quantum computer gives."""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.models.baselines import LOGREG_C, ReducedHead, zero_and_f
from qtransfer.models.fitted import inner_cv
from qtransfer.quantum.circuits import Circuit, make_circuit

FOURIER_FEATURES = 256  # at most this many frequencies (each a cos and a sin feature); more are sampled down
FOURIER_C = LOGREG_C  # the logistic regression's own grid: 8 configurations, as every head searches
# Rotations exp(-i x P / 2) by a Pauli P (and the phase shift): eigenvalue gaps 0 and 1, so each such gate adds
# frequencies -1, 0, +1 to its input's spectrum.
UNIT_ENCODINGS = frozenset({"RX", "RY", "RZ", "PhaseShift"})


def encoding_degrees(circuit: Circuit) -> tuple[int, ...]:
    """L_j for each input j: how many gates encode input j (a circuit's outputs have integer frequencies in
    -L_j..L_j along input j). Only one-parameter rotations may encode an input."""
    degrees = [0] * circuit.n_inputs
    for i, gate in enumerate(circuit.gates):
        inputs = [p.index for p in gate.params if p.source == "input"]
        if not inputs:
            continue
        if gate.name not in UNIT_ENCODINGS:
            raise InputError(f"the fourier head reads the spectrum of rotation encodings "
                             f"({', '.join(sorted(UNIT_ENCODINGS))}); gate {i} ({gate.name}) of circuit "
                             f"{circuit.name!r} encodes an input otherwise: choose a template that encodes by "
                             f"rotations")
        degrees[inputs[0]] += 1
    return tuple(degrees)


def spectrum_size(degrees: tuple[int, ...]) -> int:
    """How many nonzero frequency vectors there are up to sign: (prod(2 L_j + 1) - 1) / 2."""
    return (math.prod(2 * d + 1 for d in degrees) - 1) // 2


def check_indexable(degrees: tuple[int, ...]) -> None:
    """Refuse a spectrum too large for int64 indices (about 39 inputs of degree 1)."""
    if math.prod(2 * d + 1 for d in degrees) > 2 ** 62:
        raise InputError(f"the fourier head's spectrum of {len(degrees)} inputs is too large to index: "
                         f"use at most 39 qubits")


def frequencies(degrees: tuple[int, ...], limit: int = FOURIER_FEATURES, seed: int = 0) -> np.ndarray:
    """The nonzero integer frequency vectors of the spectrum, one of each pair (w, -w), as rows (m, n): all of them
    when there are at most `limit`, else `limit` drawn uniformly without replacement (seeded)."""
    check_indexable(degrees)
    radices = [2 * d + 1 for d in degrees]
    total = math.prod(radices)
    # Mixed-radix index k <-> vector (digit_j - L_j): -w has index total - 1 - k and w = 0 is the middle index, so
    # the indices above the middle hold one of each pair.
    half = (total - 1) // 2
    if half <= limit:
        indices = np.arange(half, dtype=np.int64)
    else:
        indices = np.sort(np.random.default_rng(seed).choice(half, size=limit, replace=False))
    indices = indices + half + 1
    columns = []
    for radix, degree in zip(reversed(radices), reversed(degrees)):  # last input fastest
        columns.append(indices % radix - degree)
        indices = indices // radix
    return np.stack(columns[::-1], axis=1) if columns else np.zeros((0, 0), dtype=np.int64)


def fourier_features(angles: Tensor, omega: Tensor) -> Tensor:
    """[cos(angles . w), sin(angles . w)] for every frequency row w: (N, 2m)."""
    phase = angles @ omega.T
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)


def _check_pca(n_qubits: int, pca: int) -> None:
    if pca not in (0, n_qubits):
        raise InputError(f"head 'fourier' reduces the features to --qubits ({n_qubits}) principal components, one "
                         f"angle per encoded input; --pca {pca} differs: drop --pca or set it to {n_qubits}")


class FourierHead(ReducedHead):
    """fourier: L2 logistic regression on the cosines and sines of the quantum head's circuit spectrum (its
    --template at --qubits) evaluated at angles pi/2 tanh(z) of the z-scored first --qubits principal components
    (as the matched svm:pca=N control reduces them, and bounded as the dressed circuit bounds its inputs); C by
    inner CV. A control: the classical model with the frequencies the circuit can express."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"C": FOURIER_C}
    frequencies: Tensor
    weight: Tensor
    bias: Tensor

    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Refuse a --pca other than --qubits, or a circuit whose encoding is not by rotations, before any work."""
        _check_pca(settings.n_qubits, settings.pca)
        check_indexable(encoding_degrees(make_circuit(settings.template, settings.n_qubits, settings.depth)))

    def __init__(self, in_features: int, n_classes: int, n_qubits: int = 4, depth: int = 6,
                 template: str = "tutorial", pca: int = 0, **shared: Any):
        _check_pca(n_qubits, pca)
        circuit = make_circuit(template, n_qubits, depth)
        if circuit.n_inputs != n_qubits:
            raise InputError(f"the fourier head needs a template with one input per qubit; {template!r} reads "
                             f"{circuit.n_inputs} inputs on {n_qubits} qubits")
        super().__init__("fourier", in_features, n_classes, n_qubits, **shared)
        self.degrees = encoding_degrees(circuit)
        check_indexable(self.degrees)
        self.fitted_buffer("frequencies", np.zeros((0, n_qubits)))
        self.fitted_buffer("weight", np.zeros((0, 0)))
        self.fitted_buffer("bias", np.zeros(0))

    def angles(self, z: Tensor) -> Tensor:
        """The circuit's input angles of reduced features: pi/2 tanh(z), in (-pi/2, pi/2)."""
        return torch.tanh(z) * (math.pi / 2)

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression

        omega = frequencies(self.degrees, FOURIER_FEATURES, seed)
        self.fitted_buffer("frequencies", omega.astype(np.float64))
        phi = fourier_features(self.angles(torch.from_numpy(z)), self.frequencies.cpu()).numpy()
        model, choices = inner_cv(LogisticRegression(solver="lbfgs", max_iter=1000), self.search(), phi, y, seed)
        weight, bias = model.coef_.T, model.intercept_
        if self.n_classes == 2:
            weight, bias = zero_and_f(weight, bias)
        self.fitted_buffer("weight", weight)
        self.fitted_buffer("bias", bias)
        return {**choices, "frequencies": len(omega), "sampled": len(omega) < spectrum_size(self.degrees)}

    def logits(self, z: Tensor) -> Tensor:
        return fourier_features(self.angles(z), self.frequencies) @ self.weight + self.bias
