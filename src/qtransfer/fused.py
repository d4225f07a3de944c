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
from .fusion import Block, Wide, schedule
from .gate_matrices import FIXED, embed, gate_matrix, real_dtype
from .params import ParamIndex, Sources


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


@dataclass
class _Step:
    """One operation of the compiled schedule: a block on a window, or a wide gate."""

    lo: int
    k: int
    segments: list  # ("const", index into constants) or ("gate", gate index, local wires)
    wide_wires: tuple[int, ...] | None = None
    pattern: list | None = None  # nonzero entries of a wide gate's matrix


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

    def _initial_state(self, mats: list[Tensor], rows: int) -> Tensor:
        """The product state of every wire's prefix gates, (rows, 2^n)."""
        vecs = []
        for (_, live), v in zip(self.prefix, self.prefix_const):
            for gi in live:
                g = self._gate(gi, mats) if gi in self.gate_slot else self._cast(self.const_gate[gi])
                v = (g @ v.unsqueeze(-1)).squeeze(-1)
            vecs.append(v)

        def kron(vs: list[Tensor]) -> Tensor:
            t = vs[0]
            for v in vs[1:]:
                t = (t.unsqueeze(-1) * v.unsqueeze(-2)).flatten(-2)
            return t

        h = max(1, self.n // 2)
        psi = kron(vecs[:h])
        if self.n > h:
            psi = (psi.unsqueeze(-1) * kron(vecs[h:]).unsqueeze(-2)).flatten(-2)
        psi = psi if psi.dim() == 2 else psi.unsqueeze(0)
        return psi.expand(rows, -1)

    def _step_matrices(self, mats: list[Tensor]) -> list[Tensor]:
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
        """Expectation values (rows, n_outputs), or the final state (rows, 2^n) when not `observe`."""
        sources = Sources(inputs, weights, self.consts)
        mats = self._gate_matrices(sources)
        psi0 = self._initial_state(mats, rows)
        step_mats = self._step_matrices(mats)
        if torch.is_grad_enabled() and (psi0.requires_grad or any(m.requires_grad for m in step_mats)):
            return _FusedSimulation.apply(self, observe, psi0, *step_mats)
        with torch.no_grad():
            psi = self.forward_state(psi0, step_mats)
            return self.measure(psi) if observe else psi

    # -- the state passes -----------------------------------------------------------------------
    def _apply(self, step: _Step, x: Tensor, out: Tensor, m: Tensor) -> Tensor:
        if step.wide_wires is not None:
            return kernels.apply_wide(x, out, m, self.n, step.wide_wires, step.pattern)
        return kernels.apply_block(x, out, m, self.n, step.lo, step.k)

    def forward_state(self, psi0: Tensor, step_mats: Sequence[Tensor]) -> Tensor:
        """The final state from the initial one, ping-ponging between two buffers."""
        a = psi0.contiguous()
        if not self.steps:
            return a.clone() if a is psi0 else a
        b = torch.empty_like(a)
        for i, (step, m) in enumerate(zip(self.steps, step_mats)):
            self._apply(step, a, b, m)
            a, b = b, (torch.empty_like(a) if i == 0 and a is psi0 else a)  # never write into psi0
        return a

    def measure(self, psi: Tensor) -> Tensor:
        """Expectation values of the observables, (rows, n_outputs)."""
        rows = psi.shape[0]
        out = torch.empty(rows, self.n_outputs, dtype=real_dtype(psi.dtype), device=psi.device)
        if self.diagonal:
            q = (psi * psi.conj()).real if psi.is_complex() else psi * psi
            level = 0
            for t in sorted(self.diagonal):
                q = q.view(rows, 2 ** (t - level), -1).sum(1) if t > level else q
                level = t
                for k, span, signs in self.diagonal[t]:
                    out[:, k] = q.view(rows, 2**span, -1).sum(-1) @ signs
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, self.n, o.paulis, o.wires)
            inner = (psi.conj() * phi).sum(-1)
            out[:, k] = inner.real if inner.is_complex() else inner
        return out

    def measure_grad(self, psi: Tensor, grad: Tensor) -> Tensor:
        """dL/dpsi (torch's convention: 2 dL/dconj(psi)) from dL/d(outputs) (rows, n_outputs)."""
        rows, n = psi.shape[0], self.n
        lam = None
        if self.diagonal:
            field, level = None, n
            for t in sorted(self.diagonal, reverse=True):
                if field is None:
                    field = grad.new_zeros(rows, 2 ** (n - t))
                else:
                    field = field.view(rows, 1, -1).expand(rows, 2 ** (level - t), -1).reshape(rows, -1)
                level = t
                for k, span, signs in self.diagonal[t]:
                    field.view(rows, 2**span, -1).add_((grad[:, k : k + 1] * signs).unsqueeze(-1))
            if level > 0:
                field = field.view(rows, 1, -1).expand(rows, 2**level, -1).reshape(rows, -1)
            lam = 2 * field * psi
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, n, o.paulis, o.wires)
            term = 2 * grad[:, k : k + 1].to(psi.dtype) * phi
            lam = term if lam is None else lam + term
        return lam

    def adjoint(self, psi: Tensor, lam: Tensor, step_mats: Sequence[Tensor], needs: Sequence[bool]) -> tuple[Tensor, list]:
        """Walk back from the final state and its gradient: (dL/dpsi0, [dL/dM per step or None])."""
        rows = psi.shape[0]
        buf = torch.stack([psi, lam])  # (2, rows, 2^n): the state and its gradient share every pass
        other = torch.empty_like(buf)
        grads: list[Tensor | None] = [None] * len(self.steps)
        for i in range(len(self.steps) - 1, -1, -1):
            step, m = self.steps[i], step_mats[i]
            mh = m.mH
            per_row = m.dim() == 3
            if per_row:
                mh = mh.repeat(2, 1, 1)
            self._apply(step, buf.view(2 * rows, -1), other.view(2 * rows, -1), mh)
            if needs[i]:
                if step.wide_wires is not None:
                    grads[i] = kernels.wide_grad(buf[1], other[0], self.n, step.wide_wires, m.shape[-1], per_row)
                else:
                    grads[i] = kernels.block_grad(buf[1], other[0], self.n, step.lo, step.k, per_row)
            buf, other = other, buf
        return buf[1], grads


class _FusedSimulation(torch.autograd.Function):
    """The state's whole journey as one autograd node; backward is the adjoint sweep."""

    @staticmethod
    def forward(ctx, sim: FusedCircuit, observe: bool, psi0: Tensor, *step_mats: Tensor) -> Tensor:  # type: ignore[override]
        psi = sim.forward_state(psi0, step_mats)
        ctx.sim, ctx.observe = sim, observe
        ctx.save_for_backward(psi, *step_mats)
        return sim.measure(psi) if observe else psi

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        psi, *step_mats = ctx.saved_tensors
        sim = ctx.sim
        lam = sim.measure_grad(psi, grad) if ctx.observe else grad
        needs = ctx.needs_input_grad[3:]
        g0, grads = sim.adjoint(psi, lam, step_mats, needs)
        return (None, None, g0 if ctx.needs_input_grad[2] else None, *grads)
