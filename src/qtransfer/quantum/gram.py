"""Kernel matrices from embedded states: fidelity, projected (one-qubit reduced states), and their shot estimates."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.gate_matrices import real_dtype

GRAM_ENTRIES = 2**22  # fidelity_kernel forms at most this many inner products at once by default


def _flat(states: Tensor, what: str) -> Tensor:
    """States (N, 2^n) from (N, 2^n) or (N, 2, ..., 2)."""
    size = math.prod(states.shape[1:]) if states.dim() >= 2 else 0
    if size < 2 or size & (size - 1):
        raise InputError(f"{what} must be states of shape (N, 2^n) or (N, 2, ..., 2), got {tuple(states.shape)}")
    return states.reshape(states.shape[0], size)


def _squared(t: Tensor) -> Tensor:
    """|t|^2 elementwise."""
    return t.real**2 + t.imag**2 if t.is_complex() else t**2


def fidelity_kernel(a: Tensor, b: Tensor, chunk: int | None = None) -> Tensor:
    """|<b_j|a_i>|^2 for states a (N_a, 2^n) and b (N_b, 2^n): the real (N_a, N_b) Gram matrix, `chunk` rows at once."""
    a, b = _flat(a, "a"), _flat(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"states a have {a.shape[1]} amplitudes and b {b.shape[1]}; embed both on the same qubits")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    chunk = max(1, GRAM_ENTRIES // max(1, b.shape[0])) if chunk is None else chunk
    if chunk < 1:
        raise InputError(f"chunk must be >= 1 rows, got {chunk}")
    out = torch.empty(a.shape[0], b.shape[0], dtype=real_dtype(dtype), device=a.device)
    b_dagger = b.conj().T
    for i in range(0, a.shape[0], chunk):
        out[i : i + chunk] = _squared(a[i : i + chunk] @ b_dagger)
    return out


def bloch_vectors(states: Tensor) -> Tensor:
    """Each qubit's reduced density matrix as its Bloch vector (<X>, <Y>, <Z>): (N, n_qubits, 3) for states (N, 2^n)."""
    psi = _flat(states, "states")
    N, n = psi.shape[0], psi.shape[1].bit_length() - 1
    out = torch.empty(N, n, 3, dtype=real_dtype(psi.dtype), device=psi.device)
    for k in range(n):
        v = psi.reshape(N, 2**k, 2, 2 ** (n - k - 1))
        zero, one = v[:, :, 0], v[:, :, 1]
        # rho_k = (I + x X + y Y + z Z) / 2, so rho_k[0, 1] = (x - i y) / 2
        rho01 = (zero * one.conj()).sum((1, 2))
        out[:, k, 0] = 2 * rho01.real
        out[:, k, 1] = -2 * rho01.imag if rho01.is_complex() else 0
        out[:, k, 2] = _squared(zero).sum((1, 2)) - _squared(one).sum((1, 2))
    return out


def projected_kernel(bloch_a: Tensor, bloch_b: Tensor, gamma: float) -> Tensor:
    """exp(-gamma sum_k ||rho_k(x) - rho_k(x')||_F^2) for Bloch vectors (N_a, n, 3), (N_b, n, 3): (N_a, N_b).

    The projected quantum kernel of Huang et al. 2021 ("Power of data in quantum machine learning"), with gamma
    multiplying the squared Frobenius distance of the one-qubit reduced density matrices as in the paper; since
    rho = (I + b . sigma) / 2, that distance is ||b - b'||^2 / 2 in Bloch vectors.
    """
    if bloch_a.dim() != 3 or bloch_a.shape[2] != 3 or bloch_b.shape[1:] != bloch_a.shape[1:]:
        raise InputError(f"Bloch vectors must have shapes (N_a, n, 3) and (N_b, n, 3), got "
                         f"{tuple(bloch_a.shape)} and {tuple(bloch_b.shape)}; use bloch_vectors(states)")
    if not (math.isfinite(gamma) and gamma > 0):
        raise InputError(f"gamma must be a positive number, got {gamma}")
    a, b = bloch_a.reshape(bloch_a.shape[0], -1), bloch_b.reshape(bloch_b.shape[0], -1).to(bloch_a.dtype)
    # exact differences (not |a|^2 + |b|^2 - 2ab), so equal states are at distance 0
    squared = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    return torch.exp(-gamma * squared / 2)


def estimate_from_shots(kernel: Tensor, shots: int, generator: torch.Generator, symmetric: bool = False) -> Tensor:
    """Fidelity kernel entries as measured: the frequency of the all-zeros outcome in `shots` runs of the
    compute-uncompute circuit U(x')^dagger U(x)|0>, i.e. Binomial(shots, K) / shots per entry, drawn on the CPU
    from `generator`.

    With `symmetric` (a training Gram matrix of a set against itself) each pair i < j is measured once and its
    estimate mirrored, and the diagonal stays 1: a state against itself needs no measurement.
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise InputError(f"shots must be a whole number >= 1, got {shots!r}")
    k = kernel.detach().to("cpu", torch.float64).clamp(0, 1)
    if not symmetric:
        estimate = torch.binomial(torch.full_like(k, shots), k, generator=generator) / shots
        return estimate.to(kernel.device, kernel.dtype)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise InputError(f"a symmetric Gram matrix must be square, got shape {tuple(k.shape)}; "
                         "pass symmetric=False for a matrix of two different sets")
    i, j = torch.triu_indices(k.shape[0], k.shape[0], offset=1)
    upper = k[i, j]
    draws = torch.binomial(torch.full_like(upper, shots), upper, generator=generator) / shots
    estimate = torch.eye(k.shape[0], dtype=torch.float64)
    estimate[i, j], estimate[j, i] = draws, draws
    return estimate.to(kernel.device, kernel.dtype)
