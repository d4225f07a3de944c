"""The dense path's per-call matrices: moment families built in one batched call, and weight-only stretches.

A family is the moments with the same gates on the same wires; a stretch is the moments between two input
moments, multiplied into one matrix per call. Both carry their own adjoint gradients (see dense.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit, Gate
from qtransfer.quantum.gate_matrices import FIXED, ROTATIONS, bit_index, embed, idle, pick, real_dtype
from qtransfer.quantum.params import ParamIndex


def moments(gates: Sequence[Gate]) -> list[list[int]]:
    """Split gates (in order) into moments of one kind acting on disjoint wires."""
    moments: list[list[int]] = []
    used: set[int] = set()
    kind = None
    for i, g in enumerate(gates):
        if moments and g.kind == kind and not used & set(g.wires):
            moments[-1].append(i)
            used |= set(g.wires)
        else:
            moments.append([i])
            used, kind = set(g.wires), g.kind
    return moments


def _generator(name: str) -> np.ndarray:
    """K with dM/dt = K M(t) for a one-parameter gate: M(t) = exp(tK) M(0), so K = M'(0) M(0)^-1."""
    f, (c, a, b) = ROTATIONS[name]
    out: np.ndarray = f * b @ np.linalg.inv(c + a)
    return out


_PAULI_GENERATORS = {p: -0.5j * FIXED[p] for p in "XYZ"}  # of RX, RY, RZ


class Family:
    """Moments with the same gates on the same wires, whose full matrices are built together.

    Every gate parameter is a factor M(t) = C + cos(f t) A + sin(f t) B (Rot(phi, theta, omega) gives
    three: its entry (a, b) is RZ(omega)[a, a] RY(theta)[a, b] RZ(phi)[b, b]). Entry (r, c) of a
    moment's full matrix is the product over factors of the entry picked by the bits of r and c on
    the gate's wires, times constants (idle wires' bits agree, parameter-free gates) folded into the
    first factor's basis at compile time. So a family costs a handful of batched ops whatever its wires.

    A moment's derivative by a parameter is K M, K the parameter's generator on its gate's wires:
    constant for one-parameter gates; for Rot a mix of its wire's Paulis weighted by its own angles.
    Input families are batched: their matrices have shape (L, batch, D, D); weight families too, per model, when
    the weights have a model axis.
    """

    def __init__(self, circuit: Circuit, moments: list[list[int]], pindex: ParamIndex):
        n = circuit.n_qubits
        first = [circuit.gates[i] for i in moments[0]]
        self.n_moments, self.D = len(moments), 2**n
        D = self.D
        const = idle(n, [w for g in first for w in g.wires]).astype(complex)
        refs: list[tuple[int, int]] = []  # (position in moment, param index) per factor
        scales: list[float] = []
        bases: list[np.ndarray] = []  # picked (3, D*D) per factor
        gens: list[np.ndarray] = []  # flat full generator (D*D,) per factor
        rots: list[tuple[int, int, int]] = []  # factors (phi, theta, omega) of each Rot
        for pos, g in enumerate(first):
            if g.name in FIXED:
                const = const * FIXED[g.name].reshape(-1)[pick(n, g.wires, 2 ** len(g.wires))]
            elif g.name == "Rot":
                diag = 3 * bit_index(n, g.wires)  # flat index of RZ's diagonal entry for a row's / column's bit
                rows, cols = (np.broadcast_to(a, (D, D)).reshape(-1) for a in (diag[:, None], diag[None, :]))
                rz, ry = ROTATIONS["RZ"][1].reshape(3, -1), ROTATIONS["RY"][1].reshape(3, -1)
                rots.append((len(refs), len(refs) + 1, len(refs) + 2))
                bases += [rz[:, cols], ry[:, pick(n, g.wires, 2)], rz[:, rows]]
                gens += [embed(n, g.wires, _PAULI_GENERATORS[p]) for p in "XYZ"]
                refs += [(pos, 0), (pos, 1), (pos, 2)]
                scales += [0.5] * 3
            else:
                f, basis = ROTATIONS[g.name]
                bases.append(basis.reshape(3, -1)[:, pick(n, g.wires, basis.shape[-1])])
                gens.append(embed(n, g.wires, _generator(g.name)))
                refs.append((pos, 0))
                scales.append(f)
        self.n_factors = F = len(refs)
        self.const = const
        if not refs:
            return
        bases[0] = bases[0] * const
        slots = np.array([[pindex.slots[m[pos], p] for pos, p in refs] for m in moments], dtype=np.int64)
        self.source, local = pindex.locate(slots)  # (L, F)
        self.size = pindex.sizes[self.source]
        self.whole = np.array_equal(local.ravel(), np.arange(self.size))
        # the forward reads each parameter thrice, in order (factor, trig term, moment): cos(scale t + phase)
        # gives [1, cos(f t), sin(f t)]
        shape = (F, 3, self.n_moments)
        self.np_index = np.broadcast_to(local.T[:, None, :], shape).flatten()
        self.np_scale = np.broadcast_to(np.outer(scales, [0.0, 1.0, 1.0])[:, :, None], shape).flatten()
        self.np_phase = np.broadcast_to(np.array([0.0, 0.0, -math.pi / 2])[:, None], shape).flatten()
        self.np_slots, self.np_basis, self.np_gens = local.ravel(), np.stack(bases), np.stack(gens, 1)
        self.np_rots = rots

    def prepare(self, dtype: torch.dtype, device: torch.device) -> Family:
        """Cast the compile-time arrays to the run dtype and device."""
        if not self.n_factors:
            return self
        rd = real_dtype(dtype)

        def cast(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a if dtype.is_complex else a.real, dtype=dtype, device=device)

        def index(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)

        self.dtype = dtype
        self.index = index(self.np_index)
        self.scale = torch.as_tensor(self.np_scale, dtype=rd, device=device)
        self.phase = torch.as_tensor(self.np_phase, dtype=rd, device=device)
        self.scale_rows, self.phase_rows = self.scale.view(-1, 1), self.phase.view(-1, 1)
        basis = cast(self.np_basis)  # (F, 3, D*D); complex as real pairs, since the trig terms are real
        self.basis = torch.view_as_real(basis).flatten(-2) if dtype.is_complex else basis
        self.gens_t = cast(self.np_gens.reshape(self.D, self.D, -1).transpose(1, 0, 2).reshape(self.D**2, -1))
        self.slots = index(self.np_slots)
        rots = np.array(self.np_rots, dtype=np.int64).reshape(-1, 3)
        self.rots = ((index(rots.T.ravel()), index(rots[:, 1:].T.ravel()), index(rots[:, :2].T.ravel()))
                     if len(rots) else None)
        return self

    def constant(self, consts: np.ndarray) -> np.ndarray:
        """The full matrix (D, D) of a single moment whose parameters are all constants."""
        full = self.const if not self.n_factors else None
        if full is None:
            t = consts[self.np_slots - (self.size - len(consts))] * self.np_scale.reshape(self.n_factors, 3)[:, 1]
            trig = np.stack([np.ones_like(t), np.cos(t), np.sin(t)], 1)
            full = np.einsum("fk,fke->fe", trig, self.np_basis).prod(0)
        return full.reshape(self.D, self.D)

    def matrices(self, src: Tensor) -> Tensor:
        """Full matrices (L, D, D), or (L, rows, D, D), from this call's source (size,) or (size, rows); rows are
        samples, or models for weights with a model axis."""
        rows = src.dim() == 2
        scale, phase = (self.scale_rows, self.phase_rows) if rows else (self.scale, self.phase)
        trig = torch.cos(torch.addcmul(phase, src.index_select(0, self.index), scale))
        entries = torch.bmm(trig.view(self.n_factors, 3, -1).mT, self.basis)  # (F, L * batch, D*D)
        if self.dtype.is_complex:
            entries = torch.view_as_complex(torch.unflatten(entries, -1, (-1, 2)))
        full = entries[0] if self.n_factors == 1 else entries.prod(0)
        return full.view(self.n_moments, -1, self.D, self.D) if rows else full.view(-1, self.D, self.D)

    def grads(self, y: Tensor, src: Tensor) -> Tensor:
        """dL/dsource (size,) or (rows, size) from Y = dL/dM^H M = (conj(dL/dM) M^T)^T per moment (L, D, D) or
        (L, rows, D, D): dL/dt = Re sum(K^T * Y)."""
        u = y.flatten(-2) @ self.gens_t  # (L, F) or (L, rows, F)
        if u.is_complex():
            u = u.real
        if u.dim() == 3:
            u = u.transpose(0, 1)
        if self.rots is not None:
            u = self._mix_rot(u, src.index_select(-1, self.slots).view(u.shape))
        u = u.flatten(-2)
        if self.whole:
            return u
        return u.new_zeros(*u.shape[:-1], self.size).index_add_(-1, self.slots, u)

    def _mix_rot(self, u: Tensor, theta: Tensor) -> Tensor:
        """Rot's generators from those of its wire's X, Y, Z (in u at its phi, theta, omega factors).

        d/domega: Z; d/dtheta: RZ(omega) Y RZ(omega)^+ = cos(omega) Y - sin(omega) X;
        d/dphi: RZ(omega) RY(theta) Z (...)^+ = cos(theta) Z + sin(theta) (cos(omega) X + sin(omega) Y).
        """
        assert self.rots is not None
        uxyz, angles, mixed = self.rots
        ux, uy, uz = torch.unflatten(u.index_select(-1, uxyz), -1, (3, -1)).unbind(-2)
        th, om = torch.unflatten(theta.index_select(-1, angles), -1, (2, -1)).unbind(-2)
        ct, st, co, so = torch.cos(th), torch.sin(th), torch.cos(om), torch.sin(om)
        d_phi = ct * uz + st * (co * ux + so * uy)
        d_theta = co * uy - so * ux
        return u.index_copy(-1, mixed, torch.cat([d_phi, d_theta], -1))


StretchRef = np.ndarray | int  # a constant moment's matrix, or a weight moment's slot
Saved = tuple[tuple[Tensor, ...], Tensor]  # a stretch's factors A_l and their running products Q_l


class Stretch:
    """Moments that depend on no input, multiplied into one matrix U = post A_L ... A_1, A_l = W_l pre_l."""

    def __init__(self, refs: Sequence[StretchRef], D: int):
        eye = np.eye(D)
        self.slots: list[int] = []
        pres: list[np.ndarray] = []
        pending: np.ndarray | None = None  # constant since the last weight moment
        for ref in refs:
            if isinstance(ref, np.ndarray):
                pending = ref if pending is None else ref @ pending
            else:
                self.slots.append(ref)
                pres.append(eye if pending is None else pending)
                pending = None
        self.np_post = pending
        self.np_pre = None if all(p is eye for p in pres) else np.stack(pres)

    def prepare(self, dtype: torch.dtype, device: torch.device, n_weight_moments: int) -> Stretch:
        """Cast the constants to the run dtype and device."""
        def cast(a: np.ndarray | None) -> Tensor | None:
            return None if a is None else torch.as_tensor(a if dtype.is_complex else a.real, dtype=dtype, device=device)

        self.all_slots = self.slots == list(range(n_weight_moments))  # every weight moment, in order
        self.index = torch.as_tensor(self.slots, dtype=torch.long, device=device)
        self.pre, self.post = cast(self.np_pre), cast(self.np_post)
        return self

    def forward(self, wmats: Tensor | None, keep: bool) -> tuple[Tensor, Saved | None]:
        """U for this call's weight-moment matrices wmats (Lw, D, D), or (Lw, models, D, D) per model; with keep,
        the A_l and Q_l = A_l ... A_1."""
        if not self.slots:
            assert self.post is not None
            return self.post, None
        assert wmats is not None
        a = wmats if self.all_slots else wmats.index_select(0, self.index)
        per_model = a.dim() == 4
        if self.pre is not None:
            a = torch.bmm(a.flatten(1, 2), self.pre).view(a.shape) if per_model else torch.bmm(a, self.pre)
        factors = a.unbind(0)
        mm = torch.bmm if per_model else torch.mm
        q = [factors[0]]
        for m in factors[1:]:
            q.append(mm(m, q[-1]))
        u = q[-1] if self.post is None else self.post @ q[-1] if per_model else torch.mm(self.post, q[-1])
        return u, ((factors, torch.stack(q)) if keep else None)

    def grads(self, state_in: Tensor, lam: Tensor, saved: Saved) -> Tensor:
        """Y_l = Q_l C_l (L, D, D), or (L, models, D, D), for lam = conj(dL/dstate_out): C_L = (conj(dL/dU))^T post,
        C_{l-1} = C_l A_l."""
        a, q = saved
        c = torch.outer(state_in, lam) if state_in.dim() == 1 else state_in.mT @ lam
        cs = [c if self.post is None else c @ self.post]
        for m in a[:0:-1]:
            cs.append(cs[-1] @ m)
        return torch.bmm(q, torch.stack(cs[::-1])) if q.dim() == 3 else q @ torch.stack(cs[::-1])

