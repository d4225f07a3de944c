"""Batched, differentiable statevector simulator in plain torch.

Wire 0 is the most significant bit of a basis-state index, as in PennyLane. A state has
shape (batch, 2, ..., 2); gate matrices have shape (..., d, d) with optional leading batch dims.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

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

Entries = list  # row-major list of (re, im) pairs; None stands for zero


def _rx(p: Tensor) -> Entries:
    c, s = torch.cos(p[..., 0] / 2), torch.sin(p[..., 0] / 2)
    return [(c, None), (None, -s), (None, -s), (c, None)]


def _ry(p: Tensor) -> Entries:
    c, s = torch.cos(p[..., 0] / 2), torch.sin(p[..., 0] / 2)
    return [(c, None), (-s, None), (s, None), (c, None)]


def _rz(p: Tensor) -> Entries:
    c, s = torch.cos(p[..., 0] / 2), torch.sin(p[..., 0] / 2)
    return [(c, -s), (None, None), (None, None), (c, s)]


def _phase(p: Tensor) -> Entries:
    one = torch.ones_like(p[..., 0])
    return [(one, None), (None, None), (None, None), (torch.cos(p[..., 0]), torch.sin(p[..., 0]))]


def _rot(p: Tensor) -> Entries:
    # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
    phi, theta, omega = p[..., 0], p[..., 1], p[..., 2]
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    a, b = (phi + omega) / 2, (phi - omega) / 2
    return [
        (c * torch.cos(a), -c * torch.sin(a)),
        (-s * torch.cos(b), -s * torch.sin(b)),
        (s * torch.cos(b), -s * torch.sin(b)),
        (c * torch.cos(a), c * torch.sin(a)),
    ]


def _controlled(single: Callable[[Tensor], Entries]) -> Callable[[Tensor], Entries]:
    def fn(p: Tensor) -> Entries:
        one = torch.ones_like(p[..., 0])
        u = single(p)
        z = (None, None)
        return [
            (one, None), z, z, z,
            z, (one, None), z, z,
            z, z, u[0], u[1],
            z, z, u[2], u[3],
        ]  # fmt: skip

    return fn


def _ising(which: str) -> Callable[[Tensor], Entries]:
    def fn(p: Tensor) -> Entries:
        c, s = torch.cos(p[..., 0] / 2), torch.sin(p[..., 0] / 2)
        z = (None, None)
        if which == "ZZ":
            m, q = (c, -s), (c, s)
            return [m, z, z, z, z, q, z, z, z, z, q, z, z, z, z, m]
        corner = (None, -s) if which == "XX" else (None, s)
        mid = (None, -s)
        cc = (c, None)
        return [cc, z, z, corner, z, cc, mid, z, z, mid, cc, z, corner, z, z, cc]

    return fn


_PARAMETRIC: dict[str, Callable[[Tensor], Entries]] = {
    "RX": _rx,
    "RY": _ry,
    "RZ": _rz,
    "PhaseShift": _phase,
    "Rot": _rot,
    "CRX": _controlled(_rx),
    "CRY": _controlled(_ry),
    "CRZ": _controlled(_rz),
    "IsingXX": _ising("XX"),
    "IsingYY": _ising("YY"),
    "IsingZZ": _ising("ZZ"),
}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype with the precision of real `dtype`."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype with the precision of `dtype`."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _assemble(entries: Entries, ref: Tensor, dtype: torch.dtype) -> Tensor:
    d = math.isqrt(len(entries))
    zero = torch.zeros_like(ref)
    re = torch.stack([zero if r is None else r for r, _ in entries], -1)
    if not dtype.is_complex:
        return re.unflatten(-1, (d, d)).to(dtype)
    im = torch.stack([zero if i is None else i for _, i in entries], -1)
    return torch.complex(re, im).unflatten(-1, (d, d)).to(dtype)


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
    if name not in _PARAMETRIC:
        raise ValueError(f"unknown gate {name!r}; known: {', '.join(GATES)}")
    if params is None or params.shape[-1] != GATES[name].n_params:
        raise ValueError(f"gate {name} needs params of shape (..., {GATES[name].n_params})")
    if not dtype.is_complex and not GATES[name].real:
        raise ValueError(f"gate {name} is complex; it cannot run in real dtype {dtype}")
    params = params.to(real_dtype(dtype))
    return _assemble(_PARAMETRIC[name](params), params[..., 0], dtype)


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
    """Where each gate parameter lives in the vector [inputs | weights | constants]."""

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

    def index(self, gate_ids: Sequence[int], n_params: int, offset: int = 0) -> list[list[int]]:
        """Slots of the parameters of the given gates, shifted by -offset."""
        return [[self.slots[g, p] - offset for p in range(n_params)] for g in gate_ids]


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
    """Moments with the same gates on the same wires, whose full matrices are built together."""

    def __init__(self, circuit: Circuit, moments: list[list[int]], pindex: _ParamIndex, offset: int):
        n = circuit.n_qubits
        first = [circuit.gates[i] for i in moments[0]]
        self.groups = []  # (gate name, parameter index (L, m, P), row index (m, D))
        by_name: dict[str, list[int]] = {}
        for pos, g in enumerate(first):
            by_name.setdefault(g.name, []).append(pos)
        for name, positions in by_name.items():
            n_params = GATES[name].n_params
            pidx = [pindex.index([m[p] for p in positions], n_params, offset) for m in moments]
            rows = np.stack([_bit_index(n, first[p].wires) for p in positions])
            self.groups.append((name, torch.tensor(pidx, dtype=torch.long), torch.as_tensor(rows)))
        busy = {w for g in first for w in g.wires}
        idle = [w for w in range(n) if w not in busy]
        ib = _bit_index(n, idle)
        self.idle_mask = None if not idle else torch.as_tensor((ib[:, None] == ib[None, :]).astype(float))

    def to(self, device: torch.device, dtype: torch.dtype) -> "_MomentFamily":
        self.groups = [(nm, p.to(device), r.to(device)) for nm, p, r in self.groups]
        if self.idle_mask is not None:
            self.idle_mask = self.idle_mask.to(device=device, dtype=dtype)
        return self

    def matrices(self, source: Tensor, dtype: torch.dtype) -> Tensor:
        """Full matrices (*lead, L, D, D) of the family's moments from a (*lead, S) parameter source."""
        out = None
        for name, pidx, rows in self.groups:
            if GATES[name].n_params:
                g = gate_matrix(name, source[..., pidx], dtype=dtype)  # (*lead, L, m, d, d)
            else:
                g = gate_matrix(name, dtype=dtype, device=source.device)
                g = g.expand(pidx.shape[0], rows.shape[0], *g.shape)
            m = torch.arange(rows.shape[0], device=rows.device)
            full = g[..., m[:, None, None], rows[:, :, None], rows[:, None, :]].prod(dim=-3)
            out = full if out is None else out * full
        if self.idle_mask is not None:
            out = out * self.idle_mask
        return out


def _tree_product(mats: Tensor) -> Tensor:
    """M_{L-1} ... M_1 M_0 for a stack (L, D, D) in application order, in log2(L) batched steps."""
    while mats.shape[0] > 1:
        tail = mats[-1:] if mats.shape[0] % 2 else None
        even = mats[: mats.shape[0] - (tail is not None)]
        mats = even[1::2] @ even[0::2]
        if tail is not None:
            mats = torch.cat([mats, tail])
    return mats[0]


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

    # -- dense ---------------------------------------------------------------------------
    def _compile_dense(self) -> None:
        c = self.circuit
        n, D = c.n_qubits, 2**c.n_qubits
        hi = complex_dtype(torch.float64) if self.dtype.is_complex else torch.float64
        moments = _moments(c.gates)
        kinds = [c.gates[m[0]].kind for m in moments]
        sig = lambda m: tuple((c.gates[i].name, c.gates[i].wires) for i in m)  # noqa: E731

        # Constant moments: full matrices now, in float64, folded into neighbours below.
        const_src = torch.as_tensor(self.pindex.consts, dtype=torch.float64)
        const_of = {}
        for mi, m in enumerate(moments):
            if kinds[mi] == "const":
                fam = _MomentFamily(c, [m], self.pindex, c.n_inputs + c.n_weights)
                fam.to(torch.device("cpu"), hi)
                const_of[mi] = fam.matrices(const_src, hi)[0]

        # Weight and input moments: families of equal signature built in one batched call.
        self.families: dict[str, list[tuple[_MomentFamily, list[int]]]] = {"weight": [], "input": []}
        slot_of: dict[int, int] = {}
        for kind in ("weight", "input"):
            groups: dict[tuple, list[int]] = {}
            for mi, m in enumerate(moments):
                if kinds[mi] == kind:
                    groups.setdefault(sig(m), []).append(mi)
            order = []
            for mis in groups.values():
                offset = self.n_offset if kind == "weight" else 0
                fam = _MomentFamily(c, [moments[i] for i in mis], self.pindex, offset)
                self.families[kind].append((fam.to(self.device, self.dtype), mis))
                order += mis
            slot_of.update({mi: pos for pos, mi in enumerate(order)})

        # Program: a list of steps over the moment sequence, constants folded.
        steps: list[tuple[str, list]] = []  # ("const", [matrix]) | ("stretch", refs) | ("input", [slot])
        for mi, kind in enumerate(kinds):
            if kind == "input":
                steps.append(("input", [slot_of[mi]]))
                continue
            ref = ("c", const_of[mi]) if kind == "const" else ("w", slot_of[mi])
            if steps and steps[-1][0] == "stretch":
                refs = steps[-1][1]
                if ref[0] == "c" and refs[-1][0] == "c":
                    refs[-1] = ("c", ref[1] @ refs[-1][1])
                else:
                    refs.append(ref)
            else:
                steps.append(("stretch", [ref]))

        # A leading constant stretch acts on |0..0>: keep only the resulting state.
        init = torch.zeros(D, dtype=hi)
        init[0] = 1
        if steps and steps[0][0] == "stretch" and steps[0][1][0][0] == "c":
            init = steps[0][1][0][1] @ init
            steps[0][1].pop(0)
            if not steps[0][1]:
                steps.pop(0)
        self.init = init.to(self.dtype).to(self.device)

        self.steps = []
        for kind, refs in steps:
            if kind == "input":
                self.steps.append(("input", refs[0], None))
                continue
            consts = [r[1] for r in refs if r[0] == "c"]
            cstack = torch.stack(consts).to(self.device, self.dtype) if consts else None
            order, ci = [], 0
            for r in refs:
                order.append(ci if r[0] == "c" else len(consts) + r[1])
                ci += r[0] == "c"
            self.steps.append(("stretch", torch.tensor(order, device=self.device), cstack))

        obs = c.observables
        self.signs = None
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
            self.obs_mats = torch.as_tensor(np.stack(mats), dtype=complex_dtype(real_dtype(self.dtype)))
            self.obs_mats = self.obs_mats.to(self.device)

    @property
    def n_offset(self) -> int:
        """Parameter-vector offset of weight/constant slots when inputs are left out."""
        return self.circuit.n_inputs

    def _dense(self, inputs: Tensor | None, weights: Tensor) -> Tensor:
        wsrc = torch.cat([weights, self.consts])
        wmats = self._family_matrices("weight", wsrc)
        imats = None
        if inputs is not None and self.families["input"]:
            isrc = torch.cat([inputs, wsrc.expand(inputs.shape[0], -1)], dim=1)
            imats = self._family_matrices("input", isrc)
        state = self.init
        for kind, order, cstack in self.steps:
            if kind == "input":
                m = imats[:, order]
                state = torch.einsum("bij,bj->bi", m, state.expand(m.shape[0], -1))
                continue
            parts = [p for p in (cstack, wmats) if p is not None]
            mats = (torch.cat(parts) if len(parts) > 1 else parts[0])[order]
            u = _tree_product(mats)
            state = state @ u.T
        return state

    def _family_matrices(self, kind: str, source: Tensor) -> Tensor | None:
        fams = self.families[kind]
        if not fams:
            return None
        mats = [fam.matrices(source, self.dtype) for fam, _ in fams]
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
        c = self.circuit
        wsrc = torch.cat([weights, self.consts])
        isrc = None
        if inputs is not None:
            isrc = torch.cat([inputs, wsrc.expand(inputs.shape[0], -1)], dim=1)
        state = zero_state(c.n_qubits, batch, self.dtype, self.device)
        for gi, g in enumerate(c.gates):
            spec = GATES[g.name]
            if spec.n_params == 0:
                m = gate_matrix(g.name, dtype=self.dtype, device=self.device)
            elif g.kind == "input":
                m = gate_matrix(g.name, isrc[:, self.pindex.index([gi], spec.n_params)[0]], self.dtype)
            else:
                idx = self.pindex.index([gi], spec.n_params, self.n_offset)[0]
                m = gate_matrix(g.name, wsrc[idx], self.dtype)
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
