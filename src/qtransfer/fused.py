"""The fused statevector path: a compiled schedule run on two state buffers, differentiated by the adjoint method.

Gate matrices, the product-state prefix and each block's k-qubit matrix are small and built with torch
autograd; the state itself flows through one autograd node (`_FusedSimulation`) whose backward walks the
schedule in reverse with the state and its gradient stacked in one buffer: a block's conjugate transpose
un-computes the state and carries the gradient back in the same matrix product, and the block's own
gradient is one contraction. Memory is a few states, whatever the depth.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import kernels
from .circuits import Circuit, Observable
from .fusion import Block, Permutation, Wide, schedule
from .gate_matrices import FIXED, embed, gate_matrix, real_dtype
from .params import ParamIndex, Sources
from .resources import EVAL_AMPLITUDES


def eval_rows(n_qubits: int, rows: int) -> int:
    """How many samples a gradient-free run simulates at once."""
    return max(1, min(rows, EVAL_AMPLITUDES >> n_qubits))


def default_block_qubits(n_qubits: int, real: bool) -> int:
    """Block width that gave the fewest state passes per circuit on a 2-core CPU (benchmarks/block_size.py)."""
    return min(n_qubits, 4 if real else 3)


def _apply_local(p: Tensor, g: Tensor, wires: Sequence[int], k: int) -> Tensor:
    """g_full @ p for g (d, d) or (rows, d, d) on local `wires` of a k-qubit block, p (..., K, K)."""
    K, m = 2**k, len(wires)
    lead = p.shape[:-2]
    nl = len(lead)
    src, dst = [nl + w for w in wires], list(range(nl, nl + m))
    t = p.reshape(*lead, *([2] * k), K).movedim(src, dst)
    shape = t.shape[nl:]
    t = g @ t.reshape(*lead, 2**m, -1)
    ol = t.dim() - 2
    t = t.reshape(*t.shape[:ol], *shape).movedim([ol + d - nl for d in dst], [ol + s - nl for s in src])
    return t.reshape(*t.shape[:ol], K, K)


class BufferPool:
    """Reused state buffers (2, 2^n, rows): fresh memory of this size costs more than a pass (page faults).
    Holds buffers for one batch size; asking for another drops them."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        self.size, self.dtype, self.device = size, dtype, device
        self.rows = 0
        self.free: list[Tensor] = []

    def take(self, rows: int) -> Tensor:
        """A buffer (2, 2^n, rows), uninitialised."""
        if rows != self.rows:
            self.free, self.rows = [], rows
        return self.free.pop() if self.free else torch.empty(2, self.size, rows, dtype=self.dtype, device=self.device)

    def give(self, *buffers: Tensor) -> None:
        """Return buffers taken with `take` (at most two are kept)."""
        for b in buffers:
            if b.shape[-1] == self.rows and len(self.free) < 2:
                self.free.append(b)


@dataclass
class _Step:
    """One operation of the compiled schedule: a block on a window, or a wide gate."""

    lo: int
    k: int
    segments: list  # ("const", index into constants) or ("gate", gate index, local wires)
    wide_wires: tuple[int, ...] | None = None
    pattern: list | None = None  # nonzero entries of a wide gate's matrix
    gather: dict | None = None  # a permutation: per direction, the source index and phase


class FusedCircuit:
    """A circuit compiled to a fused schedule; call it like `CompiledCircuit` (see engine.py)."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device, block_qubits: int | None = None):
        self.circuit, self.dtype, self.device = circuit, dtype, device
        n = self.n = circuit.n_qubits
        k = block_qubits or default_block_qubits(n, not dtype.is_complex)
        self.schedule = schedule(circuit, k)
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(dtype), device=device)
        self._compile_gates()
        self._compile_prefix()
        self._compile_steps()
        self._compile_observables(circuit.observables)
        self.pool = BufferPool(2**n, self.dtype, device)

    # -- compile ---------------------------------------------------------------------------
    def _cast(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(a if self.dtype.is_complex else a.real, dtype=self.dtype, device=self.device)

    def _compile_gates(self) -> None:
        """Constant gate matrices now; parameterised ones grouped by name and source, built per call."""
        c, pi = self.circuit, self.pindex
        self.const_gate: dict[int, np.ndarray] = {}
        groups: dict[tuple[str, bool], list[int]] = {}
        for gi, g in enumerate(c.gates):
            if g.name in FIXED:
                self.const_gate[gi] = FIXED[g.name]
            elif all(p.source == "const" for p in g.params):
                values = torch.tensor([p.value for p in g.params], dtype=torch.float64)
                self.const_gate[gi] = gate_matrix(g.name, values, dtype=torch.complex128).numpy()
            else:
                per_row = any(p.source == "input" for p in g.params)
                groups.setdefault((g.name, per_row), []).append(gi)
        self.groups = []
        self.gate_slot: dict[int, tuple[int, int]] = {}  # gate -> (group, position)
        for (name, per_row), gis in groups.items():
            slots = np.array([[pi.slots[gi, p] for p in range(len(c.gates[gi].params))] for gi in gis])
            source = "all" if per_row else "wc"
            local = slots if per_row else slots - pi.n_inputs
            index = torch.as_tensor(local.reshape(-1), dtype=torch.long, device=self.device)
            for j, gi in enumerate(gis):
                self.gate_slot[gi] = (len(self.groups), j)
            self.groups.append((name, source, index, local.shape))

    def _compile_prefix(self) -> None:
        """Each wire's starting gates; wires whose gates are all constant get their vector now."""
        self.prefix: list[tuple[np.ndarray | None, list[int]]] = []
        for gates in self.schedule.prefix:
            v = np.array([1.0, 0.0], dtype=complex)
            live: list[int] = []
            for gi in gates:
                if gi in self.const_gate and not live:
                    v = self.const_gate[gi] @ v
                else:
                    live.append(gi)
            self.prefix.append((v, live))
        # the product of the constant wires' vectors is one constant vector; live wires join per call
        self.prefix_const = [self._cast(v) for v, _ in self.prefix]

    def _compile_steps(self) -> None:
        """Blocks as sequences of constant matrices (folded now) and parameterised gates; wide gates alone."""
        c = self.circuit
        self.constants: list[Tensor] = []
        self.steps: list[_Step] = []
        for op in self.schedule.ops:
            if isinstance(op, Permutation):
                self.steps.append(_Step(0, 0, [], gather=self._gather(op.gates)))
                continue
            if isinstance(op, Wide):
                g = c.gates[op.gate]
                m = self.const_gate.get(op.gate)
                pattern = (np.abs(m) > 0).tolist() if m is not None else [[True] * 2 ** len(g.wires)] * 2 ** len(g.wires)
                segs = [("const", self._add_const(m))] if m is not None else [("gate", op.gate, None)]
                self.steps.append(_Step(0, 0, segs, g.wires, pattern))
                continue
            assert isinstance(op, Block)
            segs: list = []
            pending: np.ndarray | None = None
            for gi in op.gates:
                g = c.gates[gi]
                local = tuple(w - op.lo for w in g.wires)
                if gi in self.const_gate:
                    full = embed(op.k, local, self.const_gate[gi]).reshape(2**op.k, 2**op.k)
                    pending = full if pending is None else full @ pending
                    continue
                if pending is not None:
                    segs.append(("const", self._add_const(pending)))
                    pending = None
                segs.append(("gate", gi, local))
            if pending is not None:
                segs.append(("const", self._add_const(pending)))
            self.steps.append(_Step(op.lo, op.k, segs))

    def _gather(self, gates: Sequence[int]) -> dict:
        """Constant monomial gates as out[i] = phase[i] x[source[i]]: for U, U^H and U^T."""
        n = self.n
        to = np.arange(2**n)  # where each basis state has gone
        phase = np.ones(2**n, dtype=complex)
        bit = lambda w: (to >> (n - 1 - w)) & 1
        for gi in gates:
            g = self.circuit.gates[gi]
            w = g.wires
            if g.name in ("X", "Y"):
                if g.name == "Y":
                    phase *= np.where(bit(w[0]) == 0, 1j, -1j)
                to = to ^ (1 << (n - 1 - w[0]))
            elif g.name in ("Z", "S", "T"):
                phase *= np.where(bit(w[0]) == 1, {"Z": -1, "S": 1j, "T": np.exp(1j * np.pi / 4)}[g.name], 1)
            elif g.name == "CNOT":
                to = to ^ (bit(w[0]) << (n - 1 - w[1]))
            elif g.name == "CZ":
                phase *= np.where(bit(w[0]) & bit(w[1]), -1, 1)
            else:  # SWAP
                differ = bit(w[0]) ^ bit(w[1])
                to = to ^ (differ << (n - 1 - w[0])) ^ (differ << (n - 1 - w[1]))
        source = np.argsort(to)
        index = lambda a: torch.as_tensor(a, dtype=torch.long, device=self.device)
        phases = lambda p: None if np.all(p == 1) else self._cast(p).view(-1, 1)
        back = index(to)
        return {"forward": (index(source), phases(phase[source])), "adjoint": (back, phases(phase.conj())),
                "transpose": (back, phases(phase))}

    def _add_const(self, m: np.ndarray) -> int:
        self.constants.append(self._cast(m))
        return len(self.constants) - 1

    def _compile_observables(self, observables: Sequence[Observable]) -> None:
        """Z products read from marginals of |psi|^2, by their first wire; other Paulis applied to the state."""
        rd = real_dtype(self.dtype)
        self.diagonal: dict[int, list[tuple[int, int, Tensor]]] = {}  # first wire -> (output, span, signs)
        self.paulis: list[tuple[int, Observable]] = []
        for k, o in enumerate(observables):
            if not o.diagonal:
                self.paulis.append((k, o))
                continue
            lo, hi = min(o.wires), max(o.wires)
            span = hi - lo + 1
            idx = np.arange(2**span)
            bits = (idx[:, None] >> (hi - np.array(o.wires))[None, :]) & 1
            signs = np.prod(1 - 2 * bits, axis=1).astype(float)
            self.diagonal.setdefault(lo, []).append((k, span, torch.as_tensor(signs, dtype=rd, device=self.device)))
        self.n_outputs = len(observables)

    # -- per call: the small matrices, with autograd ------------------------------------------
    def _gate_matrices(self, sources: Sources) -> list[Tensor]:
        mats = []
        for name, source, index, shape in self.groups:
            src = sources[source]
            params = src.index_select(-1, index).unflatten(-1, shape)
            mats.append(gate_matrix(name, params, dtype=self.dtype, device=self.device))
        return mats

    def _gate(self, gi: int, mats: list[Tensor]) -> Tensor:
        group, j = self.gate_slot[gi]
        return mats[group][..., j, :, :]

    def _halves(self, mats: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The product state's two factors, batch-last: wires [0, h) as (2^h, rows|1), wires [h, n) likewise."""
        vecs = []
        for (_, live), v in zip(self.prefix, self.prefix_const):
            for gi in live:
                g = self._gate(gi, mats) if gi in self.gate_slot else self._cast(self.const_gate[gi])
                v = (g @ v.unsqueeze(-1)).squeeze(-1)
            vecs.append(v.T if v.dim() == 2 else v.unsqueeze(-1))  # (2, rows) or (2, 1)

        def kron(vs: list[Tensor]) -> Tensor:
            t = vs[0] if vs else torch.ones(1, 1, dtype=self.dtype, device=self.device)
            for v in vs[1:]:
                t = (t.unsqueeze(1) * v.unsqueeze(0)).flatten(0, 1)
            return t

        h = (self.n + 1) // 2
        return kron(vecs[:h]), kron(vecs[h:])

    def _step_matrices(self, mats: list[Tensor]) -> list[Tensor | None]:
        out = []
        for step in self.steps:
            p: Tensor | None = None
            for seg in step.segments:
                if seg[0] == "const":
                    c = self.constants[seg[1]]
                    p = c if p is None else c @ p
                elif step.wide_wires is not None:
                    p = self._gate(seg[1], mats)
                else:
                    g = self._gate(seg[1], mats)
                    eye = torch.eye(2**step.k, dtype=self.dtype, device=self.device)
                    p = _apply_local(eye if p is None else p, g, seg[2], step.k)
            out.append(p)
        return out

    def run(self, inputs: Tensor | None, weights: Tensor, rows: int, observe: bool) -> Tensor:
        """Expectation values (rows, n_outputs), or the final state batch-last (2^n, rows) when not `observe`."""
        sources = Sources(inputs, weights, self.consts)
        mats = self._gate_matrices(sources)
        left, right = self._halves(mats)
        step_mats = self._step_matrices(mats)
        small = (left, right, *step_mats)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in small):
            return _FusedSimulation.apply(self, observe, rows, *small)
        with torch.no_grad():
            chunk = eval_rows(self.n, rows)
            if chunk >= rows:
                return self._run_no_grad(left, right, step_mats, observe, rows)
            cut = lambda t, i: t if t is None or t.shape[-1] == 1 or t.dim() < 2 else t[..., i : i + chunk]
            per_sample = lambda m, i: m if m is None or m.dim() < 3 else m[i : i + chunk]
            parts = [self._run_no_grad(cut(left, i), cut(right, i), [per_sample(m, i) for m in step_mats], observe,
                                       min(chunk, rows - i)) for i in range(0, rows, chunk)]
            return torch.cat(parts, 0 if observe else 1)

    def _run_no_grad(self, left: Tensor, right: Tensor, step_mats: Sequence[Tensor | None], observe: bool,
                     rows: int) -> Tensor:
        pair, scratch = self.pool.take(rows), self.pool.take(rows)
        j = self.forward_state(left, right, step_mats, pair)
        out = self.measure(pair[j], scratch) if observe else pair[j].clone()
        self.pool.give(pair, scratch)
        return out

    # -- the state passes -----------------------------------------------------------------------
    def _apply(self, step: _Step, x: Tensor, out: Tensor, m: Tensor | None, mode: str = "forward") -> Tensor:
        """Apply a step's operator U ("forward"), U^H ("adjoint") or U^T ("transpose") from x into out."""
        if step.gather is not None:
            source, phase = step.gather[mode]
            torch.index_select(x, -2, source, out=out)
            return out if phase is None else out.mul_(phase)
        m = {"forward": m, "adjoint": m.mH, "transpose": m.mT}[mode]
        rows = x.shape[-1]
        if step.wide_wires is not None:
            return kernels.apply_wide(x, out, m, self.n, step.wide_wires, rows, step.pattern)
        return kernels.apply_block(x, out, m, self.n, step.lo, step.k, rows)

    def forward_state(self, left: Tensor, right: Tensor, step_mats: Sequence[Tensor], pair: Tensor) -> int:
        """Run the schedule from the product state left ⊗ right inside `pair` (2, 2^n, rows); the final
        state's index in it."""
        rows = pair.shape[-1]
        a, c = left.shape[0], right.shape[0]
        torch.mul(left.unsqueeze(1).expand(a, 1, rows), right.unsqueeze(0).expand(1, c, rows), out=pair[0].view(a, c, rows))
        j = 0
        for step, m in zip(self.steps, step_mats):
            self._apply(step, pair[j], pair[1 - j], m)
            j = 1 - j
        return j

    def measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        """Expectation values of the observables, (rows, n_outputs), from a batch-last state (2^n, rows);
        `scratch` (2, 2^n, rows) holds |psi|^2 and its marginals."""
        rows = psi.shape[-1]
        out = torch.empty(rows, self.n_outputs, dtype=real_dtype(psi.dtype), device=psi.device)
        if self.diagonal:
            flat = torch.view_as_real(scratch).flatten() if scratch.is_complex() else scratch.view(-1)
            size = psi.numel()
            q = flat[:size].view_as(psi) if not psi.is_complex() else flat[:size].view(psi.shape)
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
        """Write conj(dL/dpsi) (torch's convention: dL/dpsi = 2 dL/dconj(psi)) for dL/d(outputs) (rows, n_outputs)
        into `lam`."""
        conj = (lambda t: t.conj()) if psi.is_complex() else (lambda t: t)
        n, rows = self.n, psi.shape[-1]
        lam.zero_()
        if self.diagonal:
            flat = torch.view_as_real(scratch).flatten() if scratch.is_complex() else scratch.view(-1)
            half = flat.numel() // 2
            field, level, at = None, n, 0
            for t in sorted(self.diagonal, reverse=True):
                size = 2 ** (n - t) * rows
                if field is None:
                    field = flat[:size].view(-1, rows).zero_()
                else:  # repeat the field over the wires between t and the last level (alternating halves)
                    at = half if at == 0 else 0
                    field = flat[at : at + size].view(2 ** (level - t), -1).copy_(field.reshape(1, -1)).view(-1, rows)
                level = t
                for k, span, signs in self.diagonal[t]:
                    field.view(2**span, -1, rows).add_((signs[:, None] * grad[:, k][None, :]).unsqueeze(1))
            lam.view(2**level, -1, rows).copy_(field.view(1, -1, rows))
            lam.mul_(conj(psi)).mul_(2)
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, n, o.paulis, o.wires, rows)
            lam.add_(2 * grad[:, k].to(psi.dtype) * conj(phi))

    def adjoint(self, pair: Tensor, j: int, other: Tensor, step_mats: Sequence[Tensor],
                needs: Sequence[bool]) -> tuple[Tensor, Tensor, list]:
        """Walk back with the state pair[j] and mu = conj(its gradient) in pair[1 - j]; in real circuits one
        pass moves both. Returns the buffer holding the initial state and mu, the other one, and dL/dM per step."""
        rows, real = pair.shape[-1], not pair.is_complex()
        grads: list[Tensor | None] = [None] * len(self.steps)
        for i in range(len(self.steps) - 1, -1, -1):
            step, m = self.steps[i], step_mats[i]
            if real:
                self._apply(step, pair, other, m, "adjoint")
            else:
                self._apply(step, pair[j], other[j], m, "adjoint")
                self._apply(step, pair[1 - j], other[1 - j], m, "transpose")
            if needs[i]:
                per_sample = m.dim() == 3
                if step.wide_wires is not None:
                    g = kernels.wide_grad(pair[1 - j], other[j], self.n, step.wide_wires, rows, m.shape[-1], per_sample)
                else:
                    g = kernels.block_grad(pair[1 - j], other[j], self.n, step.lo, step.k, rows, per_sample)
                grads[i] = g if real else g.conj()
            pair, other = other, pair
        return pair, other, grads

    def halves_grad(self, mu0: Tensor, left: Tensor, right: Tensor, scratch: Tensor) -> tuple[Tensor, Tensor]:
        """Gradients of the product state's factors from mu0 = conj(the initial state's gradient) (2^n, rows)."""
        rows = mu0.shape[-1]
        a, c = left.shape[0], right.shape[0]
        mu = mu0.view(a, c, rows)
        prod = scratch.view(a, c, rows)
        conj = (lambda t: t.conj()) if mu.is_complex() else (lambda t: t)
        torch.mul(mu, right.unsqueeze(0), out=prod)
        g_left = conj(prod.sum(1))
        torch.mul(mu, left.unsqueeze(1), out=prod)
        g_right = conj(prod.sum(0))
        reduce = lambda g, t: g.sum(-1, keepdim=True) if t.shape[-1] == 1 and rows > 1 else g
        return reduce(g_left, left), reduce(g_right, right)


class _FusedSimulation(torch.autograd.Function):
    """The state's whole journey as one autograd node; backward is the adjoint sweep."""

    @staticmethod
    def forward(ctx, sim: FusedCircuit, observe: bool, rows: int, left: Tensor, right: Tensor, *step_mats: Tensor) -> Tensor:  # type: ignore[override]
        pair, scratch = sim.pool.take(rows), sim.pool.take(rows)
        j = sim.forward_state(left, right, step_mats, pair)
        out = sim.measure(pair[j], scratch) if observe else pair[j].clone()
        sim.pool.give(scratch)
        ctx.sim, ctx.observe, ctx.pair, ctx.j = sim, observe, pair, j
        ctx.save_for_backward(left, right, *step_mats)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        left, right, *step_mats = ctx.saved_tensors
        sim, pair, j = ctx.sim, ctx.pair, ctx.j
        ctx.pair = None
        other = sim.pool.take(pair.shape[-1])
        if ctx.observe:
            sim.measure_grad(pair[j], grad, other, pair[1 - j])
        else:
            pair[1 - j].copy_(grad.conj() if grad.is_complex() else grad)
        needs = ctx.needs_input_grad[5:]
        pair, other, grads = sim.adjoint(pair, j, other, step_mats, needs)
        g_left, g_right = sim.halves_grad(pair[1 - j], left, right, other[0])
        sim.pool.give(pair, other)
        need = ctx.needs_input_grad
        return (None, None, None, g_left if need[3] else None, g_right if need[4] else None, *grads)
