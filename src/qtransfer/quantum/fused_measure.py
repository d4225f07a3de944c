"""The fused path's measurements and their gradient fields, on batch-last states (2^n, rows).

`Expectations` reads Pauli products of a state vector (Z products from marginals of |psi|^2, others applied to
the state); `Probabilities` reads the basis-state probabilities off a vectorised density matrix's diagonal.
Both write conj(dL/dpsi) for the adjoint sweep (torch's convention: dL/dpsi = 2 dL/dconj(psi)).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from qtransfer.quantum import kernels
from qtransfer.quantum.circuits import Observable
from qtransfer.quantum.gate_matrices import real_dtype
from qtransfer.quantum.sampling import parity_signs

SIGN_MATRIX_ENTRIES = 2**20  # up to this size, all Z products are read with one matrix of signs


class Measurement(Protocol):
    """What a fused simulation reads from its final state, and the gradient field of that reading."""

    def measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        """Outputs (rows, n_outputs) from a batch-last state; `scratch` (2, 2^n, rows) is free to use."""
        ...

    def measure_grad(self, psi: Tensor, grad: Tensor, scratch: Tensor, lam: Tensor) -> None:
        """Write conj(dL/dpsi) for dL/d(outputs) (rows, n_outputs) into `lam`."""
        ...


def _conj(t: Tensor) -> Tensor:
    return t.conj() if t.is_complex() else t


class Expectations:
    """Expectation values of Pauli products: Z products read from marginals of |psi|^2 by their first wire (or,
    for small states, one matrix of signs), other products applied to the state."""

    def __init__(self, observables: Sequence[Observable], n: int, dtype: torch.dtype, device: torch.device):
        rd = real_dtype(dtype)
        self.n = n
        self.diagonal: dict[int, list[tuple[int, int, Tensor]]] = {}  # first wire -> (output, span, signs)
        self.paulis: list[tuple[int, Observable]] = []
        for k, o in enumerate(observables):
            if not o.diagonal:
                self.paulis.append((k, o))
                continue
            lo = min(o.wires)
            span = max(o.wires) - lo + 1
            signs = parity_signs(span, [Observable(o.paulis, tuple(w - lo for w in o.wires))])[:, 0]
            self.diagonal.setdefault(lo, []).append((k, span, torch.as_tensor(signs, dtype=rd, device=device)))
        self.n_outputs = len(observables)
        # small states: every Z product at once, as one product with a (2^n, outputs) matrix of signs
        self.sign_matrix: tuple[Tensor, Tensor] | None = None
        diagonal = [k for k, o in enumerate(observables) if o.diagonal]
        if diagonal and 2**n * len(diagonal) <= SIGN_MATRIX_ENTRIES:
            signs = parity_signs(n, [observables[k] for k in diagonal])
            self.sign_matrix = (torch.as_tensor(signs, dtype=rd, device=device),
                                torch.as_tensor(diagonal, dtype=torch.long, device=device))

    def measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        """Expectation values (rows, n_outputs); `scratch` holds |psi|^2 and its marginals."""
        rows = psi.shape[-1]
        out = torch.empty(rows, self.n_outputs, dtype=real_dtype(psi.dtype), device=psi.device)
        if self.sign_matrix is not None:
            signs, which = self.sign_matrix
            p = (psi * psi.conj()).real if psi.is_complex() else psi * psi
            out.index_copy_(1, which, (signs.T @ p).T)
        elif self.diagonal:
            flat = torch.view_as_real(scratch).flatten() if scratch.is_complex() else scratch.view(-1)
            size = psi.numel()
            q = flat[:size].view(psi.shape)
            if psi.is_complex():
                torch.abs(psi, out=q).square_()
            else:
                torch.mul(psi, psi, out=q)
            level, at = 0, 0
            for t in sorted(self.diagonal):
                if t > level:
                    size //= 2 ** (t - level)
                    at = flat.numel() // 2 if at == 0 else 0  # the marginals alternate between the halves
                    q = torch.sum(q.view(2 ** (t - level), -1), 0, out=flat[at : at + size])
                level = t
                for k, span, signs in self.diagonal[t]:
                    out[:, k] = signs @ q.view(2**span, -1, rows).sum(1)
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, self.n, o.paulis, o.wires, rows)
            inner = (psi.conj() * phi).sum(0)
            out[:, k] = inner.real if inner.is_complex() else inner
        return out

    def measure_grad(self, psi: Tensor, grad: Tensor, scratch: Tensor, lam: Tensor) -> None:
        """Write conj(dL/dpsi) for dL/d(outputs) (rows, n_outputs) into `lam`."""
        n, rows = self.n, psi.shape[-1]
        if self.sign_matrix is not None:
            signs, which = self.sign_matrix
            field = signs @ grad.index_select(1, which).T.to(signs.dtype)
            torch.mul(field, _conj(psi), out=lam).mul_(2)
        elif self.diagonal:
            flat = torch.view_as_real(scratch).flatten() if scratch.is_complex() else scratch.view(-1)
            half = flat.numel() // 2
            level, at = n, 0
            marginal: Tensor | None = None
            for t in sorted(self.diagonal, reverse=True):
                size = 2 ** (n - t) * rows
                if marginal is None:
                    marginal = flat[:size].view(-1, rows).zero_()
                else:  # repeat the field over the wires between t and the last level (alternating halves)
                    at = half if at == 0 else 0
                    marginal = flat[at : at + size].view(2 ** (level - t), -1).copy_(marginal.reshape(1, -1))
                    marginal = marginal.view(-1, rows)
                level = t
                for k, span, signs in self.diagonal[t]:
                    marginal.view(2**span, -1, rows).add_((signs[:, None] * grad[:, k][None, :]).unsqueeze(1))
            assert marginal is not None
            lam.view(2**level, -1, rows).copy_(marginal.view(1, -1, rows))
            lam.mul_(_conj(psi)).mul_(2)
        else:  # only X/Y products below
            lam.zero_()
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, n, o.paulis, o.wires, rows)
            lam.add_(2 * grad[:, k].to(psi.dtype) * _conj(phi))


class Probabilities:
    """Basis-state probabilities (rows, 2^q) of a density matrix vectorised over 2q wires (row bit of qubit i on
    wire 2i, column bit on 2i + 1): its diagonal."""

    def __init__(self, n_qubits: int):
        self.q = n_qubits

    def _diagonal(self, rho: Tensor) -> Tensor:
        """The view of a vectorised density matrix (4^q, rows) at its diagonal, (2,) * q + (rows,)."""
        q, rows = self.q, rho.shape[-1]
        strides = (*(3 * 4 ** (q - 1 - i) * rows for i in range(q)), 1)
        return rho.as_strided((2,) * q + (rows,), strides, rho.storage_offset())

    def measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        """Probabilities (rows, 2^q)."""
        p = self._diagonal(psi)
        return (p.real if p.is_complex() else p).reshape(-1, psi.shape[-1]).T.contiguous()

    def measure_grad(self, psi: Tensor, grad: Tensor, scratch: Tensor, lam: Tensor) -> None:
        """dL/d(probabilities) placed on the diagonal of `lam`, zero elsewhere."""
        lam.zero_()
        self._diagonal(lam).copy_(grad.T.reshape((2,) * self.q + (-1,)))
