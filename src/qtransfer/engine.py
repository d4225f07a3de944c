"""Batched, differentiable statevector simulator in plain torch.

Wire 0 is the most significant bit of a basis-state index, as in PennyLane. A state has
shape (batch, 2, ..., 2); gate matrices have shape (..., d, d) with optional leading batch dims.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .circuits import GATES, Circuit, Gate, Observable

# --------------------------------------------------------------------------- gate matrices

_S2 = 1 / math.sqrt(2)
_FIXED: dict[str, np.ndarray] = {
    "H": np.array([[_S2, _S2], [_S2, -_S2]]),
    "X": np.array([[0, 1], [1, 0]]),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.array([[1, 0], [0, -1]]),
    "S": np.array([[1, 0], [0, 1j]]),
    "T": np.array([[1, 0], [0, np.exp(1j * np.pi / 4)]]),
    "CNOT": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]),
    "CZ": np.diag([1, 1, 1, -1]),
    "SWAP": np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
}


def _rotation_basis() -> dict[str, tuple[float, np.ndarray]]:
    """One-parameter gates as M(t) = C + cos(f t) A + sin(f t) B: name -> (f, stack [C, A, B])."""
    I2, I4 = np.eye(2), np.eye(4)
    P = {k: _FIXED[k] for k in "XYZ"}
    p0, p1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    out: dict[str, tuple[float, np.ndarray]] = {}
    for k in "XYZ":
        out[f"R{k}"] = (0.5, np.stack([0 * I2, I2, -1j * P[k]]))
        out[f"CR{k}"] = (0.5, np.stack([np.kron(p0, I2), np.kron(p1, I2), np.kron(p1, -1j * P[k])]))
        out[f"Ising{k}{k}"] = (0.5, np.stack([0 * I4, I4, -1j * np.kron(P[k], P[k])]))
    out["PhaseShift"] = (1.0, np.stack([p0, p1, 1j * p1]))
    return out


_ROTATIONS = _rotation_basis()
_basis_cache: dict[tuple, Tensor] = {}


def _basis(name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (name, dtype, device)
    if key not in _basis_cache:
        b = _ROTATIONS[name][1]
        b = b if dtype.is_complex else b.real
        _basis_cache[key] = torch.as_tensor(b.reshape(3, -1), dtype=dtype, device=device)
    return _basis_cache[key]


def _rotation(name: str, theta: Tensor, dtype: torch.dtype) -> Tensor:
    f, b = _ROTATIONS[name][0], _basis(name, dtype, theta.device)
    t = theta * f
    trig = torch.stack([torch.ones_like(t), torch.cos(t), torch.sin(t)], -1).to(dtype)
    d = math.isqrt(b.shape[1])
    return (trig @ b).unflatten(-1, (d, d))


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype with the precision of real `dtype`."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype with the precision of `dtype`."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def gate_matrix(
    name: str,
    params: Tensor | None = None,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Matrix of gate `name`; `params` has shape (..., n_params) and gives matrices (..., d, d)."""
    if name in _FIXED:
        m = _FIXED[name]
        if not dtype.is_complex and np.iscomplexobj(m):
            raise ValueError(f"gate {name} is complex; it cannot run in real dtype {dtype}")
        out = torch.as_tensor(m if dtype.is_complex else m.real, dtype=dtype, device=device)
        if params is not None and params.shape[:-1]:
            out = out.expand(*params.shape[:-1], *out.shape)
        return out
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}; known: {', '.join(GATES)}")
    if params is None or params.shape[-1] != GATES[name].n_params:
        raise ValueError(f"gate {name} needs params of shape (..., {GATES[name].n_params})")
    if not dtype.is_complex and not GATES[name].real:
        raise ValueError(f"gate {name} is complex; it cannot run in real dtype {dtype}")
    params = params.to(real_dtype(dtype))
    if name == "Rot":
        # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
        rz = _rotation("RZ", params[..., 0::2], dtype)
        return rz[..., 1, :, :] @ _rotation("RY", params[..., 1], dtype) @ rz[..., 0, :, :]
    return _rotation(name, params[..., 0], dtype)


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


def _z_signs(n_wires: int) -> np.ndarray:
    idx = np.arange(2**n_wires)
    bits = (idx[:, None] >> np.arange(n_wires - 1, -1, -1)[None, :]) & 1
    return np.prod(1 - 2 * bits, axis=1).astype(float)


def expval(state: Tensor, observable: Observable) -> Tensor:
    """Expectation of a Pauli product on a (batch, 2, ..., 2) state, shape (batch,)."""
    if observable.diagonal:
        p = probabilities(state, observable.wires)
        signs = torch.as_tensor(_z_signs(len(observable.wires)), dtype=p.dtype, device=p.device)
        return p @ signs
    phi = state
    for pauli, w in zip(observable.paulis, observable.wires):
        phi = apply_matrix(phi, gate_matrix(pauli, dtype=state.dtype, device=state.device), [w])
    inner = (state.conj() * phi).reshape(state.shape[0], -1).sum(1)
    return inner.real if inner.is_complex() else inner


# --------------------------------------------------------------------------- compiled circuits


def run_dtype(circuit: Circuit, dtype: torch.dtype) -> torch.dtype:
    """The arithmetic dtype for `circuit` at precision `dtype`: real when the circuit is real."""
    dtype = real_dtype(dtype)
    return dtype if circuit.real else complex_dtype(dtype)


class _ParamIndex:
    """Where each gate parameter lives in the source vector [inputs | weights | constants]."""

    def __init__(self, circuit: Circuit):
        self.n_inputs, self.n_weights = circuit.n_inputs, circuit.n_weights
        consts: list[float] = []
        self.slots: dict[tuple[int, int], int] = {}
        for gi, g in enumerate(circuit.gates):
            for pi, p in enumerate(g.params):
                if p.source == "input":
                    self.slots[gi, pi] = p.index
                elif p.source == "weight":
                    self.slots[gi, pi] = self.n_inputs + p.index
                else:
                    self.slots[gi, pi] = self.n_inputs + self.n_weights + len(consts)
                    consts.append(p.value)
        self.consts = np.array(consts, dtype=float)

    def gather(self, moments: list[list[int]], n_params: int) -> "_Gather":
        """Fetcher of the parameters (..., L, m, P) of the given gates (L moments of m gates)."""
        slots = np.array([[[self.slots[g, p] for p in range(n_params)] for g in m] for m in moments])
        return _Gather(slots, self.n_inputs, self.n_weights)


class _Gather:
    """Reads parameters from the smallest source that holds them, by a slice when contiguous."""

    def __init__(self, slots: np.ndarray, n_inputs: int, n_weights: int):
        self.shape = slots.shape
        flat = slots.ravel()
        if flat.max() < n_inputs:
            self.source, offset = "input", 0
        elif flat.min() >= n_inputs and flat.max() < n_inputs + n_weights:
            self.source, offset = "weight", n_inputs
        elif flat.min() >= n_inputs:
            self.source, offset = "wc", n_inputs
        else:
            self.source, offset = "all", 0
        local = flat - offset
        self.start = int(local[0])
        self.contiguous = bool(np.array_equal(local, np.arange(self.start, self.start + local.size)))
        self.index = torch.as_tensor(local)

    def to(self, device: torch.device) -> "_Gather":
        self.index = self.index.to(device)
        return self

    def __call__(self, sources: "_Sources") -> Tensor:
        src = sources[self.source]
        if self.contiguous:
            flat = src[..., self.start : self.start + self.index.numel()]
        else:
            flat = src.index_select(-1, self.index)
        return flat.unflatten(-1, self.shape)


class _Sources:
    """The parameter sources of one call, each built on first use."""

    def __init__(self, inputs: Tensor | None, weights: Tensor, consts: Tensor):
        self.inputs, self.weights, self.consts = inputs, weights, consts
        self._made: dict[str, Tensor] = {}

    def __getitem__(self, name: str) -> Tensor:
        if name == "input":
            return self.inputs
        if name == "weight":
            return self.weights
        if name not in self._made:
            wc = torch.cat([self.weights, self.consts])
            self._made["wc"] = wc
            if self.inputs is not None:
                self._made["all"] = torch.cat([self.inputs, wc.expand(self.inputs.shape[0], -1)], 1)
        return self._made[name]


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


def _bit_index(n: int, wires: Sequence[int]) -> np.ndarray:
    """For every basis state, the index of its bits on `wires` (first wire most significant)."""
    idx = np.arange(2**n)
    out = np.zeros_like(idx)
    for w in wires:
        out = out * 2 + ((idx >> (n - 1 - w)) & 1)
    return out


class _MomentFamily:
    """Moments with the same gates on the same wires, whose full matrices are built together.

    Entry (r, c) of a moment's full matrix is the product over its gates of the gate-matrix entry
    picked by the bits of r and c on the gate's wires, times 1 if the idle wires' bits agree
    (else 0). For one-parameter gates the picked entries are [1, cos ft, sin ft] @ (picked basis),
    so a family costs a handful of batched ops whatever its wires; the idle mask and the entries of
    parameter-free gates are constants folded into those bases at compile time.
    """

    def __init__(self, circuit: Circuit, moments: list[list[int]], pindex: _ParamIndex):
        n = circuit.n_qubits
        D = 2**n
        first = [circuit.gates[i] for i in moments[0]]
        by_name: dict[str, list[int]] = {}
        for pos, g in enumerate(first):
            by_name.setdefault(g.name, []).append(pos)
        self.n_moments, self.D = len(moments), D
        used = {w for g in first for w in g.wires}
        idle = _bit_index(n, [w for w in range(n) if w not in used])
        const = (idle[:, None] == idle[None, :]).astype(float).reshape(-1)
        self.rotations: list[tuple[_Gather, float, np.ndarray]] = []  # (params, f, picked bases (m, 3, D*D))
        self.general: list[tuple[str, _Gather, np.ndarray]] = []  # (name, params, flat picks)
        for name, positions in by_name.items():
            d = 2 ** GATES[name].n_wires
            picks = [_pick(n, first[p].wires, d) for p in positions]
            n_params = GATES[name].n_params
            if n_params == 0:
                for pick in picks:
                    const = const * _FIXED[name].reshape(-1)[pick]
                continue
            gather = pindex.gather([[m[p] for p in positions] for m in moments], n_params)
            if name in _ROTATIONS:
                f, basis = _ROTATIONS[name]
                self.rotations.append((gather, f, np.stack([basis.reshape(3, -1)[:, pick] for pick in picks])))
            else:
                self.general.append((name, gather, np.concatenate([k * d * d + pick for k, pick in enumerate(picks)])))
        if self.rotations:  # fold the constant factor into the first rotation's first gate
            gather, f, bases = self.rotations[0]
            bases = bases.astype(np.result_type(bases, const))
            bases[0] = bases[0] * const
            self.rotations[0] = (gather, f, bases)
            const = None
        self.const = const
        self._cast: dict[tuple, tuple[list[Tensor], list[Tensor], Tensor | None, list[Tensor]]] = {}

    def to(self, device: torch.device) -> "_MomentFamily":
        self.rotations = [(g.to(device), f, b) for g, f, b in self.rotations]
        self.general = [(nm, g.to(device), p) for nm, g, p in self.general]
        return self

    def _tensors(self, dtype: torch.dtype, device: torch.device) -> tuple[list[Tensor], list[Tensor], Tensor | None, list[Tensor]]:
        """Per rotation group (f, f) and phases so cos(f t - phase) = [1, cos ft, sin ft], its bases; the constant; picks."""
        key = (dtype, device)
        if key not in self._cast:
            rd = real_dtype(dtype)
            pick = lambda a: a if dtype.is_complex else a.real  # noqa: E731
            scales = [torch.tensor([0.0, f, f], dtype=rd, device=device) for _, f, _ in self.rotations]
            bases = [torch.as_tensor(pick(b), dtype=dtype, device=device) for _, _, b in self.rotations]
            const = None if self.const is None else torch.as_tensor(pick(self.const), dtype=dtype, device=device)
            picks = [torch.as_tensor(p, device=device) for _, _, p in self.general]
            self._cast[key] = (scales, bases, const, picks)
        return self._cast[key]

    def matrices(self, sources: _Sources, dtype: torch.dtype) -> Tensor:
        """Full matrices (*batch, L, D, D) of the family's moments."""
        device = sources.weights.device
        scales, bases, const, picks = self._tensors(dtype, device)
        phase = _phase(real_dtype(dtype), device)
        parts = []
        for (gather, _, _), scale, basis in zip(self.rotations, scales, bases):
            theta = gather(sources)  # (*batch, L, m, 1)
            trig = torch.cos(torch.addcmul(phase, theta.to(scale.dtype), scale)).to(dtype)
            parts.append((trig.unsqueeze(-2) @ basis).squeeze(-2))  # (*batch, L, m, D*D)
        for (name, gather, _), pick in zip(self.general, picks):
            g = gate_matrix(name, gather(sources), dtype)  # (*batch, L, m, d, d)
            parts.append(g.flatten(-3).index_select(-1, pick).unflatten(-1, (-1, self.D * self.D)))
        if not parts:
            full = const.expand(self.n_moments, -1)
        else:
            if len(parts) > 1:
                lead = torch.broadcast_shapes(*(p.shape[:-2] for p in parts))
                parts = [torch.cat([p.expand(*lead, *p.shape[-2:]) for p in parts], -2)]
            entries = parts[0]
            full = entries.squeeze(-2) if entries.shape[-2] == 1 else entries.prod(-2)
            if const is not None:
                full = full * const
        return full.unflatten(-1, (self.D, self.D))


_phases: dict[tuple, Tensor] = {}


def _phase(dtype: torch.dtype, device: torch.device) -> Tensor:
    """(0, 0, -pi/2): cos(0) = 1, cos(ft), cos(ft - pi/2) = sin(ft)."""
    key = (dtype, device)
    if key not in _phases:
        _phases[key] = torch.tensor([0.0, 0.0, -math.pi / 2], dtype=dtype, device=device)
    return _phases[key]


def _pick(n: int, wires: Sequence[int], d: int) -> np.ndarray:
    """For every entry (r, c) of a full matrix, flat, the entry of a gate on `wires` it picks."""
    bits = _bit_index(n, wires)
    return (bits[:, None] * d + bits[None, :]).reshape(-1)


def _chain_product(mats: Tensor) -> Tensor:
    """M_{L-1} ... M_1 M_0 for a stack (L, D, D): a matmul per factor, or log2(L) batched steps when long."""
    if mats.shape[0] <= 8:
        factors = mats.unbind(0)
        out = factors[0]
        for m in factors[1:]:
            out = m @ out
        return out
    pad = (1 << (mats.shape[0] - 1).bit_length()) - mats.shape[0]
    if pad:
        eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
        mats = torch.cat([mats, eye.expand(pad, -1, -1)])
    while mats.shape[0] > 1:
        first, second = mats.unflatten(0, (-1, 2)).unbind(1)
        mats = second @ first
    return mats.squeeze(0)


class _Stretch:
    """Moments that depend on no input, multiplied into one matrix U = post (W_L pre_L) ... (W_1 pre_1)."""

    def __init__(self, refs: list[tuple[str, object]], D: int, hi: torch.dtype):
        eye = torch.eye(D, dtype=hi)
        self.slots: list[int] = []
        pres: list[Tensor] = []
        pending = None  # constant since the last weight moment
        for kind, ref in refs:
            if kind == "c":
                pending = ref if pending is None else ref @ pending
            else:
                self.slots.append(ref)
                pres.append(eye if pending is None else pending)
                pending = None
        self.post = pending
        self.pre = None if all(p is eye for p in pres) else torch.stack(pres)
        self.index: Tensor | None = torch.as_tensor(self.slots, dtype=torch.long)

    def to(self, device: torch.device, dtype: torch.dtype, n_weight_moments: int) -> "_Stretch":
        if self.slots == list(range(n_weight_moments)):
            self.index = None
        cast = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        self.index = None if self.index is None else self.index.to(device)
        self.pre, self.post = cast(self.pre), cast(self.post)
        return self

    def matrix(self, wmats: Tensor | None) -> Tensor:
        """U for this call's weight-moment matrices wmats (Lw, D, D)."""
        if not self.slots:
            return self.post
        a = wmats if self.index is None else wmats.index_select(0, self.index)
        if self.pre is not None:
            a = a @ self.pre
        u = _chain_product(a)
        return u if self.post is None else self.post @ u


class CompiledCircuit:
    """A circuit prepared for fast repeated simulation at one dtype on one device.

    method "dense" builds the full 2^n x 2^n matrix of every moment (gates on disjoint wires),
    folds constant moments at compile time and multiplies each stretch that depends only on
    weights into one matrix per call; "gates" applies gate by gate to the state.
    """

    DENSE_MAX_QUBITS = 6

    def __init__(
        self,
        circuit: Circuit,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        method: str = "auto",
    ):
        if method == "auto":
            method = "dense" if circuit.n_qubits <= self.DENSE_MAX_QUBITS else "gates"
        if method not in ("dense", "gates"):
            raise ValueError(f"method must be 'auto', 'dense' or 'gates', got {method!r}")
        self.circuit, self.method = circuit, method
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = run_dtype(circuit, dtype)
        self.pindex = _ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(self.dtype), device=self.device)
        if method == "dense":
            self._compile_dense()
        else:
            self.gathers = [
                self.pindex.gather([[gi]], GATES[g.name].n_params).to(self.device) if g.params else None
                for gi, g in enumerate(circuit.gates)
            ]

    # -- dense ---------------------------------------------------------------------------
    def _compile_dense(self) -> None:
        c = self.circuit
        D = 2**c.n_qubits
        hi = complex_dtype(torch.float64) if self.dtype.is_complex else torch.float64
        moments = _moments(c.gates)
        kinds = [c.gates[m[0]].kind for m in moments]

        # Weight and input moments: families of equal signature, each built in one batched call.
        self.families: dict[str, list[_MomentFamily]] = {"weight": [], "input": []}
        slot_of: dict[int, int] = {}
        for kind in ("weight", "input"):
            by_sig: dict[tuple, list[int]] = {}
            for mi, m in enumerate(moments):
                if kinds[mi] == kind:
                    by_sig.setdefault(tuple((c.gates[i].name, c.gates[i].wires) for i in m), []).append(mi)
            order: list[int] = []
            for mis in by_sig.values():
                fam = _MomentFamily(c, [moments[i] for i in mis], self.pindex)
                self.families[kind].append(fam.to(self.device))
                order += mis
            slot_of.update({mi: pos for pos, mi in enumerate(order)})
        n_weight_moments = sum(f.n_moments for f in self.families["weight"])

        # Steps over the moment sequence: input moments, and stretches between them.
        const_src = _Sources(None, torch.zeros(c.n_weights, dtype=torch.float64), torch.as_tensor(self.pindex.consts))
        raw: list[tuple[str, list]] = []
        for mi, kind in enumerate(kinds):
            if kind == "input":
                raw.append(("input", [slot_of[mi]]))
                continue
            if kind == "const":
                ref = ("c", _MomentFamily(c, [moments[mi]], self.pindex).matrices(const_src, hi)[0])
            else:
                ref = ("w", slot_of[mi])
            if raw and raw[-1][0] == "stretch":
                raw[-1][1].append(ref)
            else:
                raw.append(("stretch", [ref]))

        # Constants at the very start act on |0...0>: keep only the state they make.
        init = torch.zeros(D, dtype=hi)
        init[0] = 1
        if raw and raw[0][0] == "stretch":
            refs = raw[0][1]
            while refs and refs[0][0] == "c":
                init = refs.pop(0)[1] @ init
            if not refs:
                raw.pop(0)
        self.init = init.to(device=self.device, dtype=self.dtype)
        self.steps: list[tuple[str, object]] = []
        for kind, refs in raw:
            if kind == "input":
                self.steps.append(("input", refs[0]))
            else:
                self.steps.append(("stretch", _Stretch(refs, D, hi).to(self.device, self.dtype, n_weight_moments)))

        obs = c.observables
        self.signs = self.obs_mats = None
        n = c.n_qubits
        if all(o.diagonal for o in obs):
            signs = np.stack([_z_signs(len(o.wires))[_bit_index(n, o.wires)] for o in obs], 1)
            self.signs = torch.as_tensor(signs, dtype=real_dtype(self.dtype), device=self.device)
        else:
            mats = []
            for o in obs:
                full = np.ones((D, D), dtype=complex)
                for p, w in zip(o.paulis, o.wires):
                    b = _bit_index(n, [w])
                    full = full * _FIXED[p][b[:, None], b[None, :]]
                idle = _bit_index(n, [w for w in range(n) if w not in o.wires])
                mats.append(full * (idle[:, None] == idle[None, :]))
            obs_dtype = complex_dtype(real_dtype(self.dtype))
            self.obs_mats = torch.as_tensor(np.stack(mats), dtype=obs_dtype, device=self.device)

    def _dense(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        sources = _Sources(inputs, weights, self.consts)
        wmats = self._family_matrices("weight", sources)
        imats = self._family_matrices("input", sources) if inputs is not None else None
        state = self.init
        for kind, step in self.steps:
            if kind == "input":
                m = imats[:, step]
                state = m @ state if state.dim() == 1 else (m @ state.unsqueeze(-1)).squeeze(-1)
            else:
                state = state @ step.matrix(wmats).T
        return state

    def _family_matrices(self, kind: str, sources: _Sources) -> Tensor | None:
        mats = [fam.matrices(sources, self.dtype) for fam in self.families[kind]]
        if not mats:
            return None
        return mats[0] if len(mats) == 1 else torch.cat(mats, dim=-3)

    def _dense_outputs(self, state: Tensor) -> Tensor:
        if self.signs is not None:
            p = state.real**2 + state.imag**2 if state.is_complex() else state**2
            return p @ self.signs
        psi = state.to(self.obs_mats.dtype)
        ophi = torch.einsum("kij,bj->bki", self.obs_mats, psi)
        return (psi.conj().unsqueeze(1) * ophi).sum(-1).real.to(real_dtype(self.dtype))

    # -- gate by gate --------------------------------------------------------------------
    def _gates(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        sources = _Sources(inputs, weights, self.consts)
        state = zero_state(self.circuit.n_qubits, batch, self.dtype, self.device)
        for g, gather in zip(self.circuit.gates, self.gathers):
            params = None if gather is None else gather(sources)[..., 0, 0, :]
            m = gate_matrix(g.name, params, dtype=self.dtype, device=self.device)
            state = apply_matrix(state, m, g.wires)
        return state

    # -- entry points ----------------------------------------------------------------------
    def state(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Final state, shape (batch, 2, ..., 2), for inputs (batch, n_inputs) and flat weights."""
        inputs, weights, batch = self._check(inputs, weights)
        if self.method == "dense":
            s = self._dense(inputs, weights)
            s = s.expand(batch, -1) if s.dim() == 1 else s
            return s.reshape((batch,) + (2,) * self.circuit.n_qubits)
        return self._gates(inputs, weights, batch)

    def __call__(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        """Expectation values of the circuit's observables, shape (batch, n_outputs)."""
        inputs, weights, batch = self._check(inputs, weights)
        if self.method == "dense":
            s = self._dense(inputs, weights)
            out = self._dense_outputs(s.unsqueeze(0) if s.dim() == 1 else s)
            return out.expand(batch, -1) if out.shape[0] != batch else out
        state = self._gates(inputs, weights, batch)
        return torch.stack([expval(state, o) for o in self.circuit.observables], dim=1)

    def _check(self, inputs: Tensor | None, weights: Tensor) -> tuple[Tensor | None, Tensor, int]:
        c, rd = self.circuit, real_dtype(self.dtype)
        weights = weights.reshape(-1).to(rd)
        if weights.numel() != c.n_weights:
            raise ValueError(
                f"weights have {weights.numel()} values; circuit {c.name!r} needs {c.n_weights} "
                f"(shape {c.weight_shape})"
            )
        if c.n_inputs == 0:
            return None, weights, 1 if inputs is None else inputs.shape[0]
        if inputs is None or inputs.dim() != 2 or inputs.shape[1] != c.n_inputs:
            got = None if inputs is None else tuple(inputs.shape)
            raise ValueError(f"inputs must have shape (batch, {c.n_inputs}), got {got}")
        return inputs.to(rd), weights, inputs.shape[0]


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
