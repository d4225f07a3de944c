"""The fused path: a compiled schedule run on pooled state buffers, differentiated by an adjoint sweep.

Gate matrices, the product-state prefix and each block's k-wire matrix are small and built with torch
autograd; the state itself flows through one autograd node (`_FusedSimulation`). Its backward walks the
schedule in reverse with the state psi and mu = conj(dL/dpsi) side by side in one buffer: a block's M^H
un-computes psi while M^T carries mu back (one product for both in real circuits), and dL/dM =
conj(Σ mu psi^T) is one contraction; carrying the conjugate means no whole state is ever conjugated.
Memory is a few states, whatever the depth. Density matrices (noise) run the same schedule over 2n wires
and, since channels cannot be un-computed, recompute states from checkpoints instead. See docs/ENGINE.md.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum import kernels
from qtransfer.quantum.circuits import Circuit, Observable
from qtransfer.quantum.fusion import Permutation, Wide, is_monomial, schedule
from qtransfer.quantum.gate_matrices import FIXED, embed, gate_matrix, real_dtype
from qtransfer.quantum.memory import EVAL_AMPLITUDES
from qtransfer.quantum.params import ParamIndex, Sources
from qtransfer.quantum.sampling import parity_signs

SIGN_MATRIX_ENTRIES = 2**20  # up to this size, all Z products are read with one matrix of signs
# Per-model blocks on rows-last states cost strided copies (their rows are not contiguous): above this many
# amplitudes per model (2^n x rows per model) models run one after another (measured: 5x slower stacked at 16 qubits,
# batch 4; 1.7x faster at 10 qubits; even at 12).
STACK_MAX_AMPLITUDES = 2**13


def eval_rows(n_qubits: int, rows: int) -> int:
    """How many samples a gradient-free run simulates at once."""
    return max(1, min(rows, EVAL_AMPLITUDES >> n_qubits))


def default_block_qubits(n_qubits: int, real: bool) -> int:
    """Block width that ran fastest on a 2-core CPU (benchmarks/head_speed.py, block widths 3-6 compared):
    wider blocks up to 12 qubits, where building the small matrices costs more than the state passes."""
    if n_qubits <= 12:
        return min(n_qubits, 5 if real else 4)
    return 4 if real else 3


def _kron(a: Tensor, b: Tensor) -> Tensor:
    """kron(a, b) of the last two dimensions, leading dimensions broadcast."""
    d = a.shape[-1] * b.shape[-1]
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    return out.reshape(*out.shape[:-4], d, d)


def _per_row(m: Tensor, rows: int) -> Tensor:
    """Matrices (models, 1 or rows per model, ..., d, d) as one per row (rows, ..., d, d); others unchanged."""
    if m.dim() < 4:
        return m
    return m.expand(m.shape[0], rows // m.shape[0], *m.shape[2:]).reshape(rows, *m.shape[2:])


def _apply_local(p: Tensor, g: Tensor, wires: Sequence[int], k: int) -> Tensor:
    """g_full @ p for g (d, d) or (rows, d, d) on local `wires` of a k-wire block, p (..., 2^k, C)."""
    K, m, C = 2**k, len(wires), p.shape[-1]
    lead = p.shape[:-2]
    nl = len(lead)
    src, dst = [nl + w for w in wires], list(range(nl, nl + m))
    t = p.reshape(*lead, *([2] * k), C).movedim(src, dst)
    shape = t.shape[nl:]
    t = g @ t.reshape(*lead, 2**m, -1)
    ol = t.dim() - 2
    t = t.reshape(*t.shape[:ol], *shape).movedim([ol + d - nl for d in dst], [ol + s - nl for s in src])
    return t.reshape(*t.shape[:ol], K, C)


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


@dataclass(frozen=True, eq=False)
class Op:
    """One operator on the state: a parameterised gate of the circuit (its matrix built per call, or that
    matrix's complex conjugate), or a constant matrix."""

    wires: tuple[int, ...]
    gate: int | None = None
    conj: bool = False
    const: np.ndarray | None = None

    @property
    def monomial(self) -> bool:
        """Whether this is a constant permutation with phases."""
        return self.const is not None and is_monomial(self.const)


def constant_gates(circuit: Circuit) -> dict[int, np.ndarray]:
    """The matrices of gates without parameters or with constant ones, by gate index."""
    out: dict[int, np.ndarray] = {}
    for gi, g in enumerate(circuit.gates):
        if g.name in FIXED:
            out[gi] = FIXED[g.name].astype(complex)
        elif all(p.source == "const" for p in g.params):
            values = torch.tensor([p.value for p in g.params], dtype=torch.float64)
            out[gi] = gate_matrix(g.name, values, dtype=torch.complex128).numpy()
    return out


def statevector_ops(circuit: Circuit) -> list[Op]:
    """The circuit's gates as operators on its n wires."""
    consts = constant_gates(circuit)
    return [Op(g.wires, const=consts[gi]) if gi in consts else Op(g.wires, gate=gi) for gi, g in enumerate(circuit.gates)]


def density_ops(circuit: Circuit, channels: Sequence[Sequence[tuple[int, np.ndarray]]]) -> list[Op]:
    """The circuit as superoperators on a density matrix vectorised over 2n wires, qubit q's row bit on wire 2q
    and its column bit on 2q + 1: U rho U^H is U on the row wires and conj(U) on the column wires;
    channels[i] lists (qubit, 4x4 superoperator) applied after gate i."""
    consts = constant_gates(circuit)
    ops: list[Op] = []
    for gi, g in enumerate(circuit.gates):
        rows, cols = tuple(2 * w for w in g.wires), tuple(2 * w + 1 for w in g.wires)
        if gi in consts:
            ops += [Op(rows, const=consts[gi]), Op(cols, const=consts[gi].conj())]
        else:
            ops += [Op(rows, gate=gi), Op(cols, gate=gi, conj=True)]
        ops += [Op((2 * q, 2 * q + 1), const=superop) for q, superop in channels[gi]]
    return ops


@dataclass
class _Step:
    """One operation of the compiled schedule: a block on a window, or a wide gate."""

    lo: int
    k: int
    segments: list  # ("const", index into constants) or ("gate", gate index, local wires)
    wide_wires: tuple[int, ...] | None = None
    pattern: list | None = None  # nonzero entries of a wide gate's matrix
    gather: dict | None = None  # a permutation: per direction, the source index and phase


def _layers(segments: list) -> list:
    """Merge runs of parameterised one-wire gates on distinct wires into ("layer", {wire: (gate, conj)})."""
    out: list = []
    for seg in segments:
        one_wire = seg[0] == "gate" and len(seg[3]) == 1
        if one_wire and out and out[-1][0] == "layer" and seg[3][0] not in out[-1][1]:
            out[-1][1][seg[3][0]] = (seg[1], seg[2])
        elif one_wire:
            out.append(("layer", {seg[3][0]: (seg[1], seg[2])}))
        else:
            out.append(seg)
    return out


class FusedCircuit:
    """A circuit compiled to a fused schedule; call it like `CompiledCircuit` (see engine.py).

    With `channels` (per gate, the (qubit, superoperator) pairs applied after it) it simulates the density
    matrix as a vector over 2n wires with the same schedule, and returns basis-state probabilities; since
    channels are not unitary, its backward recomputes states from checkpoints instead of un-computing them.
    """

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device, block_qubits: int | None = None,
                 channels: Sequence[Sequence[tuple[int, np.ndarray]]] | None = None):
        self.circuit, self.dtype, self.device = circuit, dtype, device
        self.density = channels is not None
        self.group = 2 if self.density else 1
        n = self.n = circuit.n_qubits * self.group
        self.ops = density_ops(circuit, channels) if self.density else statevector_ops(circuit)
        k = block_qubits or default_block_qubits(n, not dtype.is_complex)
        self.schedule = schedule(self.ops, n, k, self.group)
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(dtype), device=device)
        self._compile_gates()
        self._compile_prefix()
        self._compile_steps()
        self._compile_batched_blocks()
        self._compile_prefix_together()
        self._compile_observables(circuit.observables)
        self.pool = BufferPool(2**n, self.dtype, device)

    # -- compile ---------------------------------------------------------------------------
    def _cast(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(a if self.dtype.is_complex else a.real, dtype=self.dtype, device=self.device)

    def _compile_gates(self) -> None:
        """Constant gate matrices now; parameterised ones grouped by name and source, built per call."""
        c, pi = self.circuit, self.pindex
        groups: dict[tuple[str, bool], list[int]] = {}
        for gi in sorted({op.gate for op in self.ops if op.gate is not None}):
            g = c.gates[gi]
            per_row = any(p.source == "input" for p in g.params)
            groups.setdefault((g.name, per_row), []).append(gi)
        self.groups = []
        self.groups_gates: list[list[int]] = []
        self.gate_slot: dict[int, tuple[int, int]] = {}  # gate -> (group, position)
        for (name, per_row), gis in groups.items():
            slots = np.array([[pi.slots[gi, p] for p in range(len(c.gates[gi].params))] for gi in gis])
            source = "all" if per_row else "wc"
            local = slots if per_row else slots - pi.n_inputs
            index = torch.as_tensor(local.reshape(-1), dtype=torch.long, device=self.device)
            for j, gi in enumerate(gis):
                self.gate_slot[gi] = (len(self.groups), j)
            self.groups.append((name, source, index, local.shape))
            self.groups_gates.append(gis)

    def _compile_prefix(self) -> None:
        """Each group's starting operators; those before its first parameterised one are applied now."""
        self.prefix_live: list[list[int]] = []
        self.prefix_const: list[Tensor] = []
        g = self.group
        for q, indices in enumerate(self.schedule.prefix):
            v = np.zeros(2**g, dtype=complex)
            v[0] = 1
            live: list[int] = []
            for i in indices:
                op = self.ops[i]
                if op.const is not None and not live:
                    v = embed(g, [w - g * q for w in op.wires], op.const).reshape(2**g, 2**g) @ v
                else:
                    live.append(i)
            self.prefix_live.append(live)
            self.prefix_const.append(self._cast(v))

    def _compile_steps(self) -> None:
        """Blocks as sequences of constant matrices (folded now) and parameterised gates; wide gates alone."""
        self.constants: list[Tensor] = []
        self.steps: list[_Step] = []
        for item in self.schedule.ops:
            if isinstance(item, Permutation):
                self.steps.append(_Step(0, 0, [], gather=self._gather(item.gates)))
                continue
            if isinstance(item, Wide):
                op = self.ops[item.gate]
                d = 2 ** len(op.wires)
                if op.const is not None:
                    segs, pattern = [("const", self._add_const(op.const))], (np.abs(op.const) > 0).tolist()
                else:
                    segs, pattern = [("gate", op.gate, op.conj, None)], [[True] * d] * d
                self.steps.append(_Step(0, 0, segs, op.wires, pattern))
                continue
            segs: list = []
            pending: np.ndarray | None = None
            for i in item.gates:
                op = self.ops[i]
                local = tuple(w - item.lo for w in op.wires)
                if op.const is not None:
                    full = embed(item.k, local, op.const).reshape(2**item.k, 2**item.k)
                    pending = full if pending is None else full @ pending
                    continue
                if pending is not None:
                    segs.append(("const", self._add_const(pending)))
                    pending = None
                segs.append(("gate", op.gate, op.conj, local))
            if pending is not None:
                segs.append(("const", self._add_const(pending)))
            self.steps.append(_Step(item.lo, item.k, _layers(segs)))

    def _compile_batched_blocks(self) -> None:
        """Blocks made only of constants and layers of shared one-wire gates are built together, per width:
        their segments padded with identities into one (blocks, segments, K, K) tensor whose layer slots are
        filled per call by kron products of gates looked up in one table, then multiplied in a tree."""
        shared_one_wire = [g for g, (name, source, _, shape) in enumerate(self.groups) if source == "wc" and
                           len(self.circuit.gates[self.groups_gates[g][0]].wires) == 1]
        # the table: identity, then each shared one-wire group's matrices, then their conjugates
        self.table_groups = shared_one_wire
        offset, at = {}, 1
        for g in shared_one_wire:
            offset[g] = at
            at += len(self.groups_gates[g])
        conj_shift = at - 1
        eligible: dict[int, list[int]] = {}
        for i, step in enumerate(self.steps):
            if step.gather is not None or step.wide_wires is not None:
                continue
            ok = all(seg[0] == "const" or (seg[0] == "layer" and all(self.gate_slot[gi][0] in offset for gi, _ in seg[1].values()))
                     for seg in step.segments)
            if ok and any(seg[0] == "layer" for seg in step.segments):
                eligible.setdefault(step.k, []).append(i)
        self.batched: list[tuple] = []
        for k, steps in eligible.items():
            K = 2**k
            S = max(len(self.steps[i].segments) for i in steps)
            consts = np.broadcast_to(np.eye(K, dtype=complex), (len(steps), S, K, K)).copy()
            slots, table_index = [], []
            for b, i in enumerate(steps):
                for s_, seg in enumerate(self.steps[i].segments):
                    if seg[0] == "const":
                        consts[b, s_] = self.constants[seg[1]].cpu().numpy()
                        continue
                    slots.append(b * S + s_)
                    row = []
                    for w in range(k):
                        if w not in seg[1]:
                            row.append(0)
                            continue
                        gi, conj = seg[1][w]
                        group, j = self.gate_slot[gi]
                        row.append(offset[group] + j + (conj_shift if conj else 0))
                    table_index.append(row)
            index = lambda a: torch.as_tensor(np.array(a), dtype=torch.long, device=self.device)
            self.batched.append((steps, S, K, self._cast(consts.reshape(-1, K, K)), index(slots), index(table_index)))
        self.batched_steps = {i for steps, *_ in self.batched for i in steps}

    def _batched_matrices(self, mats: list[Tensor]) -> dict[int, Tensor]:
        """The matrices of the blocks built together (see _compile_batched_blocks), by step; with a model axis
        the gate matrices (models, 1, gates, 2, 2) give blocks (models, 1, K, K)."""
        if not self.batched:
            return {}
        lead = mats[self.table_groups[0]].shape[:-3]
        parts = [torch.eye(2, dtype=self.dtype, device=self.device).expand(*lead, 1, 2, 2)]
        parts += [mats[g] for g in self.table_groups]
        if self.density:
            parts += [mats[g].conj() for g in self.table_groups]
        table = torch.cat(parts, -3)
        out: dict[int, Tensor] = {}
        for steps, S, K, consts, slots, table_index in self.batched:
            factors = table[..., table_index, :, :]  # (..., layers, k, 2, 2)
            layer = factors[..., 0, :, :]
            for w in range(1, factors.shape[-3]):
                layer = _kron(layer, factors[..., w, :, :])
            segs = consts.expand(*lead, *consts.shape).index_copy(len(lead), slots, layer)
            segs = segs.view(*lead, len(steps), S, K, K)
            while segs.shape[-3] > 1:
                if segs.shape[-3] % 2:
                    eye = torch.eye(K, dtype=self.dtype, device=self.device).expand(*lead, len(steps), 1, K, K)
                    segs = torch.cat([segs, eye], -3)
                segs = segs[..., 1::2, :, :] @ segs[..., 0::2, :, :]  # later segments act after earlier ones
            out.update(zip(steps, segs[..., 0, :, :].unbind(-3)))
        return out

    def _gather(self, indices: Sequence[int]) -> dict:
        """Constant monomial operators as out[i] = phase[i] x[source[i]]: for U, U^H and U^T."""
        n = self.n
        to = np.arange(2**n)  # where each basis state has gone
        phase = np.ones(2**n, dtype=complex)
        for i in indices:
            op = self.ops[i]
            m = op.const
            shifts = [n - 1 - w for w in op.wires]
            local = np.zeros_like(to)
            for s_ in shifts:
                local = local * 2 + ((to >> s_) & 1)
            image = np.abs(m).argmax(0)  # the row each column's one entry sits in
            new = image[local]
            phase = phase * m[new, local]
            for j, s_ in enumerate(shifts):
                bit = (new >> (len(shifts) - 1 - j)) & 1
                to = (to & ~(1 << s_)) | (bit << s_)
        source = np.argsort(to)
        index = lambda a: torch.as_tensor(a, dtype=torch.long, device=self.device)
        phases = lambda p: None if np.allclose(p, 1, rtol=0, atol=1e-15) else self._cast(p).view(-1, 1)
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
            lo = min(o.wires)
            span = max(o.wires) - lo + 1
            signs = parity_signs(span, [Observable(o.paulis, tuple(w - lo for w in o.wires))])[:, 0]
            self.diagonal.setdefault(lo, []).append((k, span, torch.as_tensor(signs, dtype=rd, device=self.device)))
        self.n_outputs = len(observables)
        # small states: every Z product at once, as one product with a (2^n, outputs) matrix of signs
        self.sign_matrix = None
        diagonal = [k for k, o in enumerate(observables) if o.diagonal]
        if not self.density and diagonal and 2**self.n * len(diagonal) <= SIGN_MATRIX_ENTRIES:
            signs = parity_signs(self.n, [observables[k] for k in diagonal])
            self.sign_matrix = (torch.as_tensor(signs, dtype=rd, device=self.device),
                                torch.as_tensor(diagonal, dtype=torch.long, device=self.device))

    # -- per call: the small matrices, with autograd ------------------------------------------
    def _gate_matrices(self, sources: Sources) -> list[Tensor]:
        mats = []
        for name, source, index, shape in self.groups:
            src = sources[source]
            params = src.index_select(-1, index).unflatten(-1, shape)
            mats.append(gate_matrix(name, params, dtype=self.dtype, device=self.device))
        return mats

    def _gate(self, gi: int, mats: list[Tensor], conj: bool = False) -> Tensor:
        group, j = self.gate_slot[gi]
        m = mats[group][..., j, :, :]
        return m.conj() if conj else m

    def _halves(self, mats: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The product state's two factors, batch-last: wires [0, h) as (2^h, rows|1), wires [h, n) likewise."""
        vecs = self._prefix_together(mats) if self.prefix_positions is not None else self._prefix_by_group(mats)

        def kron(vs: list[Tensor]) -> Tensor:
            t = vs[0] if vs else torch.ones(1, 1, dtype=self.dtype, device=self.device)
            for v in vs[1:]:
                t = (t.unsqueeze(1) * v.unsqueeze(0)).flatten(0, 1)
            return t

        h = (len(vecs) + 1) // 2
        return kron(vecs[:h]), kron(vecs[h:])

    def _compile_prefix_together(self) -> None:
        """When every wire's live prefix is the same number of parameterised one-wire gates, and at each
        position they share a source, the wires' vectors are built together: one lookup and product per position."""
        self.prefix_positions = None
        lives = self.prefix_live
        if self.group != 1 or not lives or len({len(live) for live in lives}) != 1:
            return
        positions = []
        for j in range(len(lives[0])):
            ops = [self.ops[live[j]] for live in lives]
            if any(op.gate is None for op in ops):
                return
            groups = sorted({self.gate_slot[op.gate][0] for op in ops})
            if len({self.groups[g][1] for g in groups}) != 1:
                return
            offset = dict(zip(groups, np.cumsum([0] + [len(self.groups_gates[g]) for g in groups])))
            index = [offset[self.gate_slot[op.gate][0]] + self.gate_slot[op.gate][1] for op in ops]
            positions.append((groups, torch.as_tensor(index, dtype=torch.long, device=self.device)))
        self.prefix_positions = positions
        self.prefix_start = torch.stack(self.prefix_const)  # (n, 2)

    def _prefix_together(self, mats: list[Tensor]) -> list[Tensor]:
        v = self.prefix_start
        for groups, index in self.prefix_positions:
            table = torch.cat([mats[g] for g in groups], -3) if len(groups) > 1 else mats[groups[0]]
            v = (table.index_select(-3, index) @ v.unsqueeze(-1)).squeeze(-1)  # (rows|-, n, 2)
        v = v.permute(1, 2, 0) if v.dim() == 3 else v.unsqueeze(-1)  # (n, 2, rows|1)
        return list(v.unbind(0))

    def _prefix_by_group(self, mats: list[Tensor]) -> list[Tensor]:
        vecs = []
        g = self.group
        for q, (live, v) in enumerate(zip(self.prefix_live, self.prefix_const)):
            v = v.unsqueeze(-1)  # (2^g, 1): a one-column matrix
            for i in live:
                op = self.ops[i]
                m = self._cast(op.const) if op.const is not None else self._gate(op.gate, mats, op.conj)
                v = _apply_local(v, m, [w - g * q for w in op.wires], g)
            v = v.squeeze(-1)
            vecs.append(v.T if v.dim() == 2 else v.unsqueeze(-1))  # (2^g, rows) or (2^g, 1)
        return vecs

    def _step_matrices(self, mats: list[Tensor], rows: int) -> list[Tensor | None]:
        """Each step's matrix: (K, K) shared, (rows, K, K) per sample, or (models, 1 or rows per model, K, K);
        wide gates' per-model matrices are repeated over their rows."""
        out = []
        batched = self._batched_matrices(mats)
        for i, step in enumerate(self.steps):
            if i in batched:
                out.append(batched[i])
                continue
            p: Tensor | None = None
            for seg in step.segments:
                if seg[0] == "const":
                    c = self.constants[seg[1]]
                    p = c if p is None else c @ p
                elif step.wide_wires is not None:
                    p = self._gate(seg[1], mats, seg[2])
                elif seg[0] == "layer":
                    layer = self._layer(seg[1], step.k, mats)
                    p = layer if p is None else layer @ p
                else:
                    g = self._gate(seg[1], mats, seg[2])
                    eye = torch.eye(2**step.k, dtype=self.dtype, device=self.device)
                    p = _apply_local(eye if p is None else p, g, seg[3], step.k)
            if step.wide_wires is not None and p.dim() == 4:
                p = _per_row(p, rows)
            out.append(p)
        return out

    def _layer(self, gates: dict[int, tuple[int, bool]], k: int, mats: list[Tensor]) -> Tensor:
        """The kron product over a block's k wires of one-wire gates (identity where none acts)."""
        eye = torch.eye(2, dtype=self.dtype, device=self.device)
        out: Tensor | None = None
        for w in range(k):
            f = self._gate(gates[w][0], mats, gates[w][1]) if w in gates else eye
            if out is None:
                out = f
                continue
            out = _kron(out, f)
        return out

    def run(
        self, inputs: Tensor | None, weights: Tensor, rows: int, observe: bool, models: int | None = None
    ) -> Tensor:
        """Expectation values (rows, n_outputs), or the final state batch-last (2^n, rows) when not `observe`.

        With `models`, weights (models, n_weights) and inputs (models, rows / models, n_inputs) or None: rows run
        model by model, each model's gates built from its own weights and its blocks applied to its rows; large
        states (see STACK_MAX_AMPLITUDES) run one model after another."""
        if models is not None and (2**self.n) * (rows // models) > STACK_MAX_AMPLITUDES:
            parts = [self.run(None if inputs is None else inputs[k], weights[k], rows // models, observe)
                     for k in range(models)]
            return torch.cat(parts, 0 if observe else 1)
        if models is None:
            sources = Sources(inputs, weights, self.consts)
        else:
            sources = Sources(inputs, weights.unsqueeze(1), self.consts)
        mats = self._gate_matrices(sources)  # with models: (models, 1 or rows per model, gates, d, d)
        left, right = self._halves(mats if models is None else [_per_row(m, rows) for m in mats])
        step_mats = self._step_matrices(mats, rows)
        small = (left, right, *step_mats)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in small):
            return _FusedSimulation.apply(self, observe, rows, *small)
        with torch.no_grad():
            chunk = eval_rows(self.n, rows)
            if chunk >= rows:
                return self._run_no_grad(left, right, step_mats, observe, rows)
            cut = lambda t, i: t if t is None or t.shape[-1] == 1 or t.dim() < 2 else t[..., i : i + chunk]
            per_sample = lambda m, i: m if m is None or m.dim() < 3 else _per_row(m, rows)[i : i + chunk]
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
        m = m if mode == "forward" else m.mH if mode == "adjoint" else m.mT
        rows = x.shape[-1]
        if step.wide_wires is not None:
            return kernels.apply_wide(x, out, m, self.n, step.wide_wires, rows, step.pattern)
        return kernels.apply_block(x, out, m, self.n, step.lo, step.k, rows)

    def forward_state(self, left: Tensor, right: Tensor, step_mats: Sequence[Tensor], pair: Tensor,
                      checkpoints: list | None = None) -> int:
        """Run the schedule from the product state left ⊗ right inside `pair` (2, 2^n, rows); the final
        state's index in it. With `checkpoints`, copies of the state before every segment's first step."""
        rows = pair.shape[-1]
        a, c = left.shape[0], right.shape[0]
        torch.mul(left.unsqueeze(1).expand(a, 1, rows), right.unsqueeze(0).expand(1, c, rows), out=pair[0].view(a, c, rows))
        j = 0
        for i, (step, m) in enumerate(zip(self.steps, step_mats)):
            if checkpoints is not None and i % self.segment == 0:
                checkpoints.append(pair[j].clone())
            self._apply(step, pair[j], pair[1 - j], m)
            j = 1 - j
        return j

    @property
    def segment(self) -> int:
        """Steps between checkpoints of the density path's backward: about sqrt(steps) states kept twice."""
        return max(1, math.isqrt(len(self.steps)))

    def _diagonal(self, rho: Tensor) -> Tensor:
        """The view of a vectorised density matrix (4^q, rows) at its diagonal, (2,) * q + (rows,)."""
        q, rows = self.circuit.n_qubits, rho.shape[-1]
        strides = tuple(3 * 4 ** (q - 1 - i) * rows for i in range(q)) + (1,)
        return rho.as_strided((2,) * q + (rows,), strides, rho.storage_offset())

    def measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        if self.density:  # basis-state probabilities (rows, 2^q)
            p = self._diagonal(psi)
            return (p.real if p.is_complex() else p).reshape(-1, psi.shape[-1]).T.contiguous()
        return self._measure(psi, scratch)

    def _measure(self, psi: Tensor, scratch: Tensor) -> Tensor:
        """Expectation values of the observables, (rows, n_outputs), from a batch-last state (2^n, rows);
        `scratch` (2, 2^n, rows) holds |psi|^2 and its marginals."""
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
        """Write conj(dL/dpsi) for dL/d(outputs) into `lam`."""
        if self.density:
            lam.zero_()
            self._diagonal(lam).copy_(grad.T.reshape((2,) * self.circuit.n_qubits + (-1,)))
            return
        self._measure_grad(psi, grad, scratch, lam)

    def _measure_grad(self, psi: Tensor, grad: Tensor, scratch: Tensor, lam: Tensor) -> None:
        """Write conj(dL/dpsi) (torch's convention: dL/dpsi = 2 dL/dconj(psi)) for dL/d(outputs) (rows, n_outputs)
        into `lam`."""
        conj = (lambda t: t.conj()) if psi.is_complex() else (lambda t: t)
        n, rows = self.n, psi.shape[-1]
        if self.sign_matrix is not None:
            signs, which = self.sign_matrix
            field = signs @ grad.index_select(1, which).T.to(signs.dtype)
            torch.mul(field, conj(psi), out=lam).mul_(2)
        elif self.diagonal:
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
        else:  # only X/Y products below
            lam.zero_()
        for k, o in self.paulis:
            phi = kernels.apply_pauli(psi, n, o.paulis, o.wires, rows)
            lam.add_(2 * grad[:, k].to(psi.dtype) * conj(phi))

    def adjoint(self, pair: Tensor, j: int, other: Tensor, step_mats: Sequence[Tensor],
                needs: Sequence[bool]) -> tuple[Tensor, Tensor, list]:
        """Walk back with the state pair[j] and mu = conj(its gradient) in pair[1 - j]; in real circuits one
        pass moves both. Returns the buffer holding the initial state and mu, the other one, and dL/dM per step."""
        real = not pair.is_complex()
        grads: list[Tensor | None] = [None] * len(self.steps)
        for i in range(len(self.steps) - 1, -1, -1):
            step, m = self.steps[i], step_mats[i]
            if real:
                self._apply(step, pair, other, m, "adjoint")
            else:
                self._apply(step, pair[j], other[j], m, "adjoint")
                self._apply(step, pair[1 - j], other[1 - j], m, "transpose")
            if needs[i]:
                grads[i] = self._step_grad(step, m, pair[1 - j], other[j])
            pair, other = other, pair
        return pair, other, grads

    def adjoint_checkpointed(self, checkpoints: list[Tensor], mu: Tensor, step_mats: Sequence[Tensor],
                             needs: Sequence[bool]) -> tuple[Tensor, Tensor, list]:
        """The backward for operators that cannot be un-computed (channels): each segment's states are
        recomputed from its checkpoint, then mu = conj(dL/dstate), in the pair buffer `mu`, goes back by M^T.
        Returns the initial mu, a free state buffer, and dL/dM per step."""
        j = 0
        grads: list[Tensor | None] = [None] * len(self.steps)
        states: list[Tensor] = []
        for s0 in range((len(checkpoints) - 1) * self.segment, -1, -self.segment):
            stop = min(s0 + self.segment, len(self.steps))
            states[:1] = [checkpoints.pop()]
            for t in range(s0, stop - 1):
                if len(states) <= t - s0 + 1:
                    states.append(torch.empty_like(states[0]))
                self._apply(self.steps[t], states[t - s0], states[t - s0 + 1], step_mats[t])
            for t in range(stop - 1, s0 - 1, -1):
                step, m = self.steps[t], step_mats[t]
                self._apply(step, mu[j], mu[1 - j], m, "transpose")
                if needs[t]:
                    grads[t] = self._step_grad(step, m, mu[j], states[t - s0])
                j = 1 - j
        return mu[j], (states[0] if states else mu[1 - j]), grads

    def _step_grad(self, step: _Step, m: Tensor, mu_out: Tensor, psi_in: Tensor) -> Tensor:
        """dL/dM = conj(Σ mu_out psi_in^T) of one block or wide gate, (d, d), per sample (rows, d, d) or per
        group of rows (models, rows per group, d, d)."""
        rows, per_sample = psi_in.shape[-1], m.dim() == 3
        if m.dim() == 4:
            g = kernels.block_grad_grouped(mu_out, psi_in, self.n, step.lo, step.k, rows, m.shape[0] * m.shape[1])
            g = g.view(m.shape)
        elif step.wide_wires is not None:
            g = kernels.wide_grad(mu_out, psi_in, self.n, step.wide_wires, rows, m.shape[-1], per_sample)
        else:
            g = kernels.block_grad(mu_out, psi_in, self.n, step.lo, step.k, rows, per_sample)
        return g.conj() if g.is_complex() else g

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
        checkpoints: list[Tensor] | None = [] if sim.density else None
        j = sim.forward_state(left, right, step_mats, pair, checkpoints)
        out = sim.measure(pair[j], scratch) if observe else pair[j].clone()
        sim.pool.give(scratch)
        if checkpoints is not None:
            sim.pool.give(pair)
            pair = None
        ctx.sim, ctx.observe, ctx.pair, ctx.j, ctx.checkpoints = sim, observe, pair, j, checkpoints
        ctx.save_for_backward(left, right, *step_mats)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if ctx.pair is None and ctx.checkpoints is None:  # the sweep consumed the states it kept
            raise RuntimeError("the fused engine's simulation can be differentiated once per forward pass; run the "
                               "circuit again for another gradient")
        left, right, *step_mats = ctx.saved_tensors
        sim, j, needs = ctx.sim, ctx.j, ctx.needs_input_grad[5:]
        rows = max(left.shape[-1], right.shape[-1], grad.shape[0] if ctx.observe else grad.shape[-1])
        conj = (lambda t: t.conj()) if grad.is_complex() else (lambda t: t)
        if ctx.checkpoints is not None:
            mu = sim.pool.take(rows)
            if ctx.observe:
                sim.measure_grad(mu[1], grad, mu[1], mu[0])
            else:
                mu[0].copy_(conj(grad))
            checkpoints, ctx.checkpoints = ctx.checkpoints, None  # the sweep overwrites them
            mu0, free, grads = sim.adjoint_checkpointed(checkpoints, mu, step_mats, needs)
            g_left, g_right = sim.halves_grad(mu0, left, right, free)
            sim.pool.give(mu)
        else:
            pair, other = ctx.pair, sim.pool.take(rows)
            ctx.pair = None
            if ctx.observe:
                sim.measure_grad(pair[j], grad, other, pair[1 - j])
            else:
                pair[1 - j].copy_(conj(grad))
            pair, other, grads = sim.adjoint(pair, j, other, step_mats, needs)
            g_left, g_right = sim.halves_grad(pair[1 - j], left, right, other[0])
            sim.pool.give(pair, other)
        need = ctx.needs_input_grad
        return (None, None, None, g_left if need[3] else None, g_right if need[4] else None, *grads)
