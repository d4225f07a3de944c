"""Batched, differentiable statevector simulator in plain torch.

Wire 0 is the most significant bit of a basis-state index, as in PennyLane. A state has
shape (batch, 2, ..., 2); gate matrices have shape (..., d, d) with optional leading batch dims.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Gate, Observable
from qtransfer.quantum.fused import FusedCircuit
from qtransfer.quantum.gate_matrices import (
    FIXED,
    ROTATIONS,
    bit_index,
    embed,
    gate_matrix,
    idle,
    pick,
    real_dtype,
    run_dtype,
    z_signs,
)
from qtransfer.quantum.memory import DENSE_MAX_QUBITS
from qtransfer.quantum.params import ParamIndex, Sources

# --------------------------------------------------------------------------- functional API


def zero_state(
    n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """|0...0> for `batch` samples, shape (batch, 2, ..., 2)."""
    state = torch.zeros((batch, 2**n_qubits), dtype=dtype, device=device)
    state[:, 0] = 1
    return state.view((batch,) + (2,) * n_qubits)


def apply_matrix(state: Tensor, matrix: Tensor, wires: Sequence[int]) -> Tensor:
    """Apply a (d, d) or per-sample (batch, d, d) matrix to `wires` of a (batch, 2, ..., 2) state."""
    n = state.dim() - 1
    k = len(wires)
    axes = [1 + w for w in wires]
    moved = state.movedim(axes, list(range(n + 1 - k, n + 1)))
    shape = moved.shape
    flat = moved.reshape(shape[0], -1, 2**k)
    if matrix.dim() == 3:
        out = torch.bmm(flat, matrix.transpose(1, 2))
    else:
        out = flat @ matrix.T
    return out.view(shape).movedim(list(range(n + 1 - k, n + 1)), axes)


def apply_gate(state: Tensor, name: str, wires: Sequence[int], params: Tensor | None = None) -> Tensor:
    """Apply gate `name`; `params` of shape (n_params,) or per-sample (batch, n_params)."""
    m = gate_matrix(name, params, dtype=state.dtype, device=state.device)
    return apply_matrix(state, m, wires)


def probabilities(state: Tensor, wires: Sequence[int] | None = None) -> Tensor:
    """Probabilities of the basis states of `wires` (all wires when None), shape (batch, 2**k)."""
    n = state.dim() - 1
    p = state.real**2 + state.imag**2 if state.is_complex() else state**2
    if wires is None:
        return p.reshape(p.shape[0], -1)
    others = [1 + w for w in range(n) if w not in wires]
    if others:
        p = p.sum(dim=others)
    # sum keeps the remaining wires in increasing order; reorder to the order asked for
    order = sorted(wires)
    p = p.permute([0] + [1 + order.index(w) for w in wires])
    return p.reshape(p.shape[0], -1)


def expval(state: Tensor, observable: Observable) -> Tensor:
    """Expectation of a Pauli product on a (batch, 2, ..., 2) state, shape (batch,)."""
    if observable.diagonal:
        p = probabilities(state, observable.wires)
        signs = torch.as_tensor(z_signs(len(observable.wires)), dtype=p.dtype, device=p.device)
        return p @ signs
    phi = state
    for pauli, w in zip(observable.paulis, observable.wires):
        phi = apply_matrix(phi, gate_matrix(pauli, dtype=state.dtype, device=state.device), [w])
    inner = (state.conj() * phi).reshape(state.shape[0], -1).sum(1)
    return inner.real if inner.is_complex() else inner


# --------------------------------------------------------------------------- compiled circuits


def _moments(gates: Sequence[Gate]) -> list[list[int]]:
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
    return f * b @ np.linalg.inv(c + a)


_PAULI_GENERATORS = {p: -0.5j * FIXED[p] for p in "XYZ"}  # of RX, RY, RZ


class _Family:
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
        self.np_slots, self.np_basis, self.np_gens, self.np_rots = local.ravel(), np.stack(bases), np.stack(gens, 1), rots

    def prepare(self, dtype: torch.dtype, device: torch.device) -> _Family:
        """Cast the compile-time arrays to the run dtype and device."""
        if not self.n_factors:
            return self
        rd = real_dtype(dtype)
        cast = lambda a: torch.as_tensor(a if dtype.is_complex else a.real, dtype=dtype, device=device)
        index = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)
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
        self.rots = (index(rots.T.ravel()), index(rots[:, 1:].T.ravel()), index(rots[:, :2].T.ravel())) if len(rots) else None
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
            entries = torch.view_as_complex(entries.unflatten(-1, (-1, 2)))
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
        uxyz, angles, mixed = self.rots
        ux, uy, uz = u.index_select(-1, uxyz).unflatten(-1, (3, -1)).unbind(-2)
        th, om = theta.index_select(-1, angles).unflatten(-1, (2, -1)).unbind(-2)
        ct, st, co, so = torch.cos(th), torch.sin(th), torch.cos(om), torch.sin(om)
        d_phi = ct * uz + st * (co * ux + so * uy)
        d_theta = co * uy - so * ux
        return u.index_copy(-1, mixed, torch.cat([d_phi, d_theta], -1))


class _Stretch:
    """Moments that depend on no input, multiplied into one matrix U = post A_L ... A_1, A_l = W_l pre_l."""

    def __init__(self, refs: list[tuple[str, object]], D: int):
        eye = np.eye(D)
        self.slots: list[int] = []
        pres: list[np.ndarray] = []
        pending = None  # constant since the last weight moment
        for kind, ref in refs:
            if kind == "c":
                pending = ref if pending is None else ref @ pending
            else:
                self.slots.append(ref)
                pres.append(eye if pending is None else pending)
                pending = None
        self.np_post = pending
        self.np_pre = None if all(p is eye for p in pres) else np.stack(pres)

    def prepare(self, dtype: torch.dtype, device: torch.device, n_weight_moments: int) -> _Stretch:
        """Cast the constants to the run dtype and device."""
        cast = lambda a: None if a is None else torch.as_tensor(a if dtype.is_complex else a.real, dtype=dtype, device=device)
        self.all_slots = self.slots == list(range(n_weight_moments))  # every weight moment, in order
        self.index = torch.as_tensor(self.slots, dtype=torch.long, device=device)
        self.pre, self.post = cast(self.np_pre), cast(self.np_post)
        return self

    def forward(self, wmats: Tensor | None, keep: bool) -> tuple[Tensor, tuple | None]:
        """U for this call's weight-moment matrices wmats (Lw, D, D), or (Lw, models, D, D) per model; with keep,
        the A_l and Q_l = A_l ... A_1."""
        if not self.slots:
            return self.post, None
        a = wmats if self.all_slots else wmats.index_select(0, self.index)
        per_model = a.dim() == 4
        if self.pre is not None:
            a = torch.bmm(a.flatten(1, 2), self.pre).view(a.shape) if per_model else torch.bmm(a, self.pre)
        a = a.unbind(0)
        mm = torch.bmm if per_model else torch.mm
        q = [a[0]]
        for m in a[1:]:
            q.append(mm(m, q[-1]))
        u = q[-1] if self.post is None else self.post @ q[-1] if per_model else torch.mm(self.post, q[-1])
        return u, ((a, torch.stack(q)) if keep else None)

    def grads(self, state_in: Tensor, lam: Tensor, saved: tuple) -> Tensor:
        """Y_l = Q_l C_l (L, D, D), or (L, models, D, D), for lam = conj(dL/dstate_out): C_L = (conj(dL/dU))^T post,
        C_{l-1} = C_l A_l."""
        a, q = saved
        c = torch.outer(state_in, lam) if state_in.dim() == 1 else state_in.mT @ lam
        cs = [c if self.post is None else c @ self.post]
        for m in a[:0:-1]:
            cs.append(cs[-1] @ m)
        return torch.bmm(q, torch.stack(cs[::-1])) if q.dim() == 3 else q @ torch.stack(cs[::-1])


class _DenseSimulation(torch.autograd.Function):
    """The dense simulation as one autograd node whose backward is the adjoint method."""

    @staticmethod
    def forward(ctx, sim: CompiledCircuit, observe: bool, inputs: Tensor | None, weights: Tensor) -> Tensor:  # type: ignore[override]
        tape: list = []
        out = sim._dense(inputs, weights, observe, tape)
        ctx.save_for_backward(inputs, weights)
        ctx.sim, ctx.observe, ctx.tape = sim, observe, tape
        return out if observe else out.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor | None, Tensor | None]:  # type: ignore[override]
        inputs, weights = ctx.saved_tensors
        gi, gw = ctx.sim._dense_backward(ctx.tape, grad, ctx.observe, inputs, weights)
        need = ctx.needs_input_grad
        return None, None, gi if need[2] else None, gw if need[3] else None


class CompiledCircuit:
    """A circuit prepared for fast repeated simulation at one dtype on one device.

    method "dense" builds the full 2^n x 2^n matrix of every moment (gates on disjoint wires),
    folds constant moments at compile time and multiplies each stretch that depends only on
    weights into one matrix per call; its gradient is the adjoint method, in one autograd node.
    "fused" (fused.py) builds a product state from each wire's first gates, groups the rest into blocks
    of a few adjacent wires applied with one matrix product each, and differentiates by an adjoint sweep
    that keeps a few states whatever the depth. "gates" applies gate by gate to the state, differentiated
    by torch autograd: the plain reference the others are checked against.
    """

    DENSE_MAX_QUBITS = DENSE_MAX_QUBITS

    def __init__(
        self,
        circuit: Circuit,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        method: str = "auto",
        block_qubits: int | None = None,
    ):
        if method == "auto":
            method = "dense" if circuit.n_qubits <= self.DENSE_MAX_QUBITS else "fused"
        if method not in ("dense", "fused", "gates"):
            raise InputError(f"method must be 'auto', 'dense', 'fused' or 'gates', got {method!r}")
        self.circuit, self.method = circuit, method
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = run_dtype(circuit, dtype)
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(self.dtype), device=self.device)
        if method == "dense":
            self._compile_dense()
        elif method == "fused":
            self.fused = FusedCircuit(circuit, self.dtype, self.device, block_qubits)
        else:
            self.gathers = [self._gate_gather(gi, len(g.params)) if g.params else None for gi, g in enumerate(circuit.gates)]

    # -- dense ---------------------------------------------------------------------------
    def _compile_dense(self) -> None:
        c = self.circuit
        D = self.D = 2**c.n_qubits
        moments = _moments(c.gates)
        kinds = [c.gates[m[0]].kind for m in moments]

        # Weight and input moments: families of equal signature, each built in one batched call.
        self.families: dict[str, list[_Family]] = {"weight": [], "input": []}
        slot_of: dict[int, int] = {}
        for kind in ("weight", "input"):
            by_sig: dict[tuple, list[int]] = {}
            for mi, m in enumerate(moments):
                if kinds[mi] == kind:
                    by_sig.setdefault(tuple((c.gates[i].name, c.gates[i].wires) for i in m), []).append(mi)
            order: list[int] = []
            for mis in by_sig.values():
                fam = _Family(c, [moments[i] for i in mis], self.pindex)
                self.families[kind].append(fam.prepare(self.dtype, self.device))
                order += mis
            slot_of.update({mi: pos for pos, mi in enumerate(order)})
        self.n_moments = {k: sum(f.n_moments for f in fams) for k, fams in self.families.items()}

        # Steps over the moment sequence: input moments, and stretches between them.
        raw: list[tuple[str, list]] = []
        for mi, kind in enumerate(kinds):
            if kind == "input":
                raw.append(("input", [slot_of[mi]]))
                continue
            if kind == "const":
                ref = ("c", _Family(c, [moments[mi]], self.pindex).constant(self.pindex.consts))
            else:
                ref = ("w", slot_of[mi])
            if raw and raw[-1][0] == "stretch":
                raw[-1][1].append(ref)
            else:
                raw.append(("stretch", [ref]))

        # Constants at the very start act on |0...0>: keep only the state they make.
        init = np.zeros(D, dtype=complex)
        init[0] = 1
        if raw and raw[0][0] == "stretch":
            refs = raw[0][1]
            while refs and refs[0][0] == "c":
                init = refs.pop(0)[1] @ init
            if not refs:
                raw.pop(0)
        self.init = torch.as_tensor(init if self.dtype.is_complex else init.real, dtype=self.dtype, device=self.device)
        self.steps: list[tuple[str, object]] = []
        for kind, refs in raw:
            if kind == "input":
                self.steps.append(("input", refs[0]))
            else:
                self.steps.append(("stretch", _Stretch(refs, D).prepare(self.dtype, self.device, self.n_moments["weight"])))
        # the backward stops at the first step with parameters
        has_params = [kind == "input" or bool(step.slots) for kind, step in self.steps]
        self.first_param_step = has_params.index(True) if any(has_params) else len(self.steps)

        obs = c.observables
        self.signs = self.signs2 = self.obs_mats = None
        n = c.n_qubits
        if all(o.diagonal for o in obs):
            signs = np.stack([z_signs(len(o.wires))[bit_index(n, o.wires)] for o in obs], 1)
            self.signs = torch.as_tensor(signs, dtype=real_dtype(self.dtype), device=self.device)
            self.signs2 = (2 * self.signs).T.contiguous()  # maps dL/d<obs> to dL/d|psi|^2, doubled
        else:
            mats = np.stack([embed(n, o.wires, functools.reduce(np.kron, [FIXED[p] for p in o.paulis])) for o in obs])
            mats = mats.reshape(len(obs) * D, D)  # row k * D + i is row i of observable k
            self.obs_mats = torch.as_tensor(mats if self.dtype.is_complex else mats.real, dtype=self.dtype, device=self.device)

    def _family_matrices(self, kind: str, sources: Sources) -> Tensor | None:
        mats = []
        for fam in self.families[kind]:
            src = sources[fam.source]
            src = src if src.dim() < 3 else src.reshape(-1, src.shape[-1])  # a model axis: (models * rows, size)
            mats.append(fam.matrices(src if src.dim() == 1 else src.T))
        if not mats:
            return None
        return mats[0] if len(mats) == 1 else torch.cat(mats)

    def _sources(self, inputs: Tensor | None, weights: Tensor) -> Sources:
        """This call's parameter sources; weights with a model axis (models, n_weights) broadcast over rows."""
        return Sources(inputs, weights if weights.dim() == 1 else weights.unsqueeze(1), self.consts)

    def _dense(self, inputs: Tensor | None, weights: Tensor, observe: bool, tape: list | None = None) -> Tensor:
        """Outputs (batch, n_outputs) or final state (batch, D); no batch dim when no input moment ran. With a model
        axis (weights (models, n_weights), inputs (models, batch, n_inputs)): (models, batch or 1, ...)."""
        sources = self._sources(inputs, weights)
        models = None if weights.dim() == 1 else weights.shape[0]
        wmats = self._family_matrices("weight", sources)
        imats = self._family_matrices("input", sources) if inputs is not None else None
        keep = tape is not None
        state = self.init if models is None else self.init.view(1, 1, -1)
        for kind, step in self.steps:
            if kind == "input":
                m = imats[step]  # (batch, D, D), or (models * batch, D, D)
                if models is not None:
                    m = m.view(models, -1, self.D, self.D)
                    new = (m @ state.unsqueeze(-1)).squeeze(-1)
                else:
                    new = m @ state if state.dim() == 1 else torch.bmm(m, state.unsqueeze(-1)).squeeze(-1)
                record = (m, state.shape, new)
            else:
                u, saved = step.forward(wmats, keep)
                new = state @ u.mT
                record = (state, u, saved)
            if keep:
                tape.append(record)
            state = new
        if not observe:
            return state
        if keep:
            tape.append(state)
        if self.signs is not None:
            p = (state * state.conj()).real if state.is_complex() else state * state
            return p @ self.signs
        ophi = (state @ self.obs_mats.mT).unflatten(-1, (-1, self.D))  # (..., K, D): O_k psi
        if keep:
            tape.append(ophi)
        out = (ophi * state.conj().unsqueeze(-2)).sum(-1)
        return out.real if out.is_complex() else out

    def _dense_backward(
        self, tape: list, grad: Tensor, observe: bool, inputs: Tensor | None, weights: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """Gradients wrt inputs and weights by the adjoint method; lam is conj(dL/dstate) as it goes back."""
        if not observe:
            lam = grad.conj()
        elif self.signs is not None:
            lam = tape[len(self.steps)].conj() * (grad @ self.signs2)
        else:
            lam = 2 * (grad.to(self.dtype).unsqueeze(-2) @ tape[-1].conj()).squeeze(-2)
        yw: Tensor | None = None
        yi: list[Tensor] = [None] * self.n_moments["input"]  # type: ignore[list-item]
        first = self.first_param_step
        for k in range(len(self.steps) - 1, first - 1, -1):
            kind, step = self.steps[k]
            if kind == "input":
                m, shape_in, out = tape[k]
                y = out.unsqueeze(-1) * lam.unsqueeze(-2)
                yi[step] = y if y.dim() == 3 else y.flatten(0, 1)
                if k > first:
                    lam = (lam.unsqueeze(-2) @ m).squeeze(-2)
                    lam = lam if lam.shape == shape_in else lam.sum_to_size(shape_in)
                continue
            state_in, u, saved = tape[k]
            if saved is not None:
                y = step.grads(state_in, lam, saved)
                if step.all_slots:
                    yw = y
                else:
                    yw = y.new_zeros(self.n_moments["weight"], *y.shape[1:]) if yw is None else yw
                    yw.index_copy_(0, step.index, y)
            if k > first:
                lam = lam @ u
        sources = self._sources(inputs, weights)
        gi = gw = None
        ys = {"weight": yw, "input": (yi[0].unsqueeze(0) if len(yi) == 1 else torch.stack(yi)) if yi else None}
        n_in, n_w = self.circuit.n_inputs, self.circuit.n_weights
        for kind, y in ys.items():
            fams, start = self.families[kind], 0
            for fam in fams:
                g = fam.grads(y if len(fams) == 1 else y[start : start + fam.n_moments], sources[fam.source])
                start += fam.n_moments
                if fam.source == "input":
                    gi = g if gi is None else gi + g
                    continue
                if fam.source == "all":
                    gi = g[:, :n_in] if gi is None else gi + g[:, :n_in]
                    g = g[:, n_in:]
                    g = g.sum(0) if weights.dim() == 1 else g.unflatten(0, (weights.shape[0], -1)).sum(1)
                g = g if fam.source == "weight" else g[..., :n_w]
                gw = g if gw is None else gw + g
        return (None if gi is None else gi.view(inputs.shape)), gw

    def _dense_run(self, inputs: Tensor | None, weights: Tensor, observe: bool) -> Tensor:
        """The dense simulation, through the adjoint autograd node when a gradient may be asked for."""
        if torch.is_grad_enabled() and (weights.requires_grad or (inputs is not None and inputs.requires_grad)):
            return _DenseSimulation.apply(self, observe, inputs, weights)
        return self._dense(inputs, weights, observe)

    # -- gate by gate --------------------------------------------------------------------
    def _gate_gather(self, gi: int, n_params: int) -> tuple[str, Tensor]:
        source, local = self.pindex.locate(np.array([self.pindex.slots[gi, p] for p in range(n_params)]))
        return source, torch.as_tensor(local, device=self.device)

    def _gates(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        sources = Sources(inputs, weights, self.consts)
        state = zero_state(self.circuit.n_qubits, batch, self.dtype, self.device)
        for g, gather in zip(self.circuit.gates, self.gathers):
            params = None if gather is None else sources[gather[0]].index_select(-1, gather[1])
            m = gate_matrix(g.name, params, dtype=self.dtype, device=self.device)
            state = apply_matrix(state, m, g.wires)
        return state

    # -- entry points ----------------------------------------------------------------------
    def state(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Final state, shape (batch, 2, ..., 2), for inputs (batch, n_inputs) and flat weights; with a model axis
        (inputs (models, batch, n_inputs), weights (models, n_weights)) shape (models, batch, 2, ..., 2)."""
        inputs, weights, batch, models = self._check(inputs, weights)
        if models is not None:
            return self._stacked(inputs, weights, batch, observe=False)
        if self.method == "dense":
            s = self._dense_run(inputs, weights, observe=False)
            s = s.expand(batch, -1) if s.dim() == 1 else s
            return s.reshape((batch,) + (2,) * self.circuit.n_qubits)
        if self.method == "fused":
            s = self.fused.run(inputs, weights, 1 if inputs is None else batch, observe=False)
            return s.T.expand(batch, -1).reshape((batch,) + (2,) * self.circuit.n_qubits)
        return self._gates(inputs, weights, batch)

    def __call__(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Expectation values of the circuit's observables, shape (batch, n_outputs); with a model axis (inputs
        (models, batch, n_inputs), weights (models, n_weights)) shape (models, batch, n_outputs)."""
        inputs, weights, batch, models = self._check(inputs, weights)
        if models is not None:
            return self._stacked(inputs, weights, batch, observe=True)
        if self.method == "dense":
            out = self._dense_run(inputs, weights, observe=True)
            return out.expand(batch, -1) if out.dim() == 1 else out
        if self.method == "fused":
            return self.fused.run(inputs, weights, 1 if inputs is None else batch, observe=True).expand(batch, -1)
        state = self._gates(inputs, weights, batch)
        return torch.stack([expval(state, o) for o in self.circuit.observables], dim=1)

    def _stacked(self, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
        """Outputs (models, batch, n_outputs) or states (models, batch, 2, ..., 2) of one call for many models."""
        models, n = weights.shape[0], self.circuit.n_qubits
        if models == 1 and self.method != "gates":  # one model: the solo path, which has fewer ops
            solo_inputs = None if inputs is None else inputs[0]
            out = (self(solo_inputs, weights[0]) if observe else self.state(solo_inputs, weights[0])).unsqueeze(0)
            return out.expand(1, batch, *out.shape[2:])
        rows = 1 if inputs is None else inputs.shape[1]  # each model's simulated rows
        if self.method == "dense":
            out = self._dense_run(inputs, weights, observe)
        elif self.method == "fused":
            out = self.fused.run(inputs, weights, models * rows, observe, models=models)
            out = (out if observe else out.T).view(models, rows, -1)
        else:
            flat = None if inputs is None else inputs.reshape(models * rows, -1)
            state = self._gates(flat, weights.repeat_interleave(rows, 0), models * rows)
            if not observe:
                return state.view(models, rows, *state.shape[1:]).expand(models, batch, *state.shape[1:])
            out = torch.stack([expval(state, o) for o in self.circuit.observables], dim=1).view(models, rows, -1)
        out = out.expand(models, batch, out.shape[-1])
        return out if observe else out.reshape((models, batch) + (2,) * n)

    def _check(self, inputs: Tensor | None, weights: Tensor) -> tuple[Tensor | None, Tensor, int, int | None]:
        c, rd = self.circuit, real_dtype(self.dtype)
        models = model_axis(c, inputs, weights)
        if models is not None:
            return self._check_stacked(inputs, weights, models)
        weights = weights if weights.dim() == 1 else weights.reshape(-1)
        weights = weights if weights.dtype == rd else weights.to(rd)
        if weights.numel() != c.n_weights:
            raise InputError(
                f"weights have {weights.numel()} values; circuit {c.name!r} needs {c.n_weights} "
                f"(shape {c.weight_shape}); for many models at once pass weights (models, {c.n_weights}) "
                f"with inputs (models, batch, {c.n_inputs})"
            )
        if c.n_inputs == 0:
            return None, weights, 1 if inputs is None else inputs.shape[0], None
        if inputs is None or inputs.dim() != 2 or inputs.shape[1] != c.n_inputs:
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"inputs must have shape (batch, {c.n_inputs}), or (models, batch, {c.n_inputs}) "
                             f"with weights (models, {c.n_weights}); got {got}")
        return (inputs if inputs.dtype == rd else inputs.to(rd)), weights, inputs.shape[0], None

    def _check_stacked(
        self, inputs: Tensor | None, weights: Tensor, models: int
    ) -> tuple[Tensor | None, Tensor, int, int]:
        c, rd = self.circuit, real_dtype(self.dtype)
        if weights.dim() != 2 or tuple(weights.shape) != (models, c.n_weights):
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"with inputs of shape {got} (models, batch, n_inputs), weights must have shape "
                             f"(models, n_weights) = ({models}, {c.n_weights}); got {tuple(weights.shape)}")
        weights = weights if weights.dtype == rd else weights.to(rd)
        if c.n_inputs == 0:
            return None, weights, 1 if inputs is None else inputs.shape[1], models
        if inputs is None or inputs.shape[2] != c.n_inputs:
            got = None if inputs is None else tuple(inputs.shape)
            raise InputError(f"inputs must have shape (models, batch, {c.n_inputs}) = ({models}, batch, {c.n_inputs}) "
                             f"for weights of shape {tuple(weights.shape)}; got {got}")
        return (inputs if inputs.dtype == rd else inputs.to(rd)), weights, inputs.shape[1], models


def model_axis(circuit: Circuit, inputs: Tensor | None, weights: Tensor) -> int | None:
    """The number of models when a call stacks many (inputs (models, batch, n_inputs), or for a circuit without
    inputs weights (models, n_weights) other than its own weight_shape), else None."""
    if inputs is not None and inputs.dim() == 3:
        return inputs.shape[0]
    if (inputs is None and circuit.n_inputs == 0 and weights.dim() == 2 and weights.shape[1] == circuit.n_weights
            and tuple(weights.shape) != circuit.weight_shape):
        return weights.shape[0]
    return None


def simulate(
    circuit: Circuit,
    inputs: Tensor | None,
    weights: Tensor,
    dtype: torch.dtype = torch.float32,
    method: str = "auto",
) -> Tensor:
    """One-off simulation: expectation values (batch, n_outputs) of `circuit`."""
    device = weights.device
    return CompiledCircuit(circuit, dtype=dtype, device=device, method=method)(inputs, weights)
