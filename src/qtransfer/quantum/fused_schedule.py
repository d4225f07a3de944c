"""The fused path's compiler: a circuit's operators become a typed schedule of steps on the batch-last state.

`fusion.py` decides the grouping (numpy only); this module turns it into what a call runs: gate groups built
per call, the product-state prefix, blocks (as segments of constant matrices, parameterised gates and layers of
one-wire gates), wide gates and permutations (as gathers), and the blocks whose matrices are built together.
Every record is frozen and named; see docs/ENGINE.md.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit
from qtransfer.quantum.fusion import Block, Permutation, Schedule, Wide, is_monomial, schedule
from qtransfer.quantum.gate_matrices import FIXED, embed, gate_matrix
from qtransfer.quantum.params import ParamIndex

Channels = Sequence[Sequence[tuple[int, np.ndarray]]]  # per gate, the (qubit, 4x4 superoperator) pairs after it
Cast = Callable[[np.ndarray], Tensor]


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
    return [Op(g.wires, const=consts[gi]) if gi in consts else Op(g.wires, gate=gi)
            for gi, g in enumerate(circuit.gates)]


def density_ops(circuit: Circuit, channels: Channels) -> list[Op]:
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


# -- the schedule's records ------------------------------------------------------------------


class GateGroup(NamedTuple):
    """Parameterised gates of one name and source, whose matrices are built in one call: their parameters are
    source[slots] reshaped to `shape` (gates, params per gate)."""

    name: str
    source: str
    slots: Tensor
    shape: tuple[int, ...]
    gates: tuple[int, ...]


class GateRef(NamedTuple):
    """A parameterised gate's matrix (or its conjugate) at `position` in its group's matrices."""

    group: int
    position: int
    conj: bool


@dataclass(frozen=True)
class ConstSegment:
    """Constant operators of a block, multiplied at compile time into one matrix."""

    matrix: Tensor


@dataclass(frozen=True)
class GateSegment:
    """One parameterised gate of a block on its local wires (all of a wide gate's wires when None)."""

    gate: GateRef
    wires: tuple[int, ...] | None


@dataclass(frozen=True)
class LayerSegment:
    """Parameterised one-wire gates on distinct wires of a block, applied as one kron product: by local wire."""

    gates: dict[int, GateRef]


Segment = ConstSegment | GateSegment | LayerSegment


@dataclass(frozen=True)
class BlockStep:
    """A block on wires lo .. lo + k - 1: its segments' product is one (2^k, 2^k) matrix per call."""

    lo: int
    k: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class WideStep:
    """A gate whose wires are farther apart than a window, applied over strided slices of its nonzero entries."""

    wires: tuple[int, ...]
    segment: ConstSegment | GateSegment
    pattern: tuple[tuple[bool, ...], ...]


class Gather(NamedTuple):
    """out[i] = phase[i] x[source[i]] (no phase when None)."""

    source: Tensor
    phase: Tensor | None


@dataclass(frozen=True)
class GatherStep:
    """Constant monomial operators composed into one gather, for U, U^H and U^T."""

    forward: Gather
    adjoint: Gather
    transpose: Gather


Step = BlockStep | WideStep | GatherStep


@dataclass(frozen=True)
class BatchedBlocks:
    """Blocks of width k built together: constant segments padded with identities in `consts`
    (blocks * segments, K, K), whose layer slots `slots` are filled per call by kron products of the gates that
    `table_index` (layers, k) looks up in the table of shared one-wire gates, then multiplied in a tree."""

    steps: tuple[int, ...]
    segments: int
    size: int
    consts: Tensor
    slots: Tensor
    table_index: Tensor


class PrefixPosition(NamedTuple):
    """One position of the wires' shared prefix: the groups whose matrices make its table, and each wire's row in it."""

    groups: tuple[int, ...]
    rows: Tensor


@dataclass(frozen=True)
class PrefixWire:
    """A group of wires' product-state vector: `start` (its constant operators applied), then the `live` ops."""

    live: tuple[int, ...]
    start: Tensor


@dataclass(frozen=True)
class FusedSchedule:
    """Everything a call of the fused path runs, compiled once per circuit, dtype and device."""

    n: int
    group: int
    ops: tuple[Op, ...]
    fusion: Schedule
    groups: tuple[GateGroup, ...]
    prefix: tuple[PrefixWire, ...]
    prefix_positions: tuple[PrefixPosition, ...] | None  # when every wire's prefix is built together
    prefix_start: Tensor  # the prefix vectors' starts, stacked (groups, 2^group)
    steps: tuple[Step, ...]
    batched: tuple[BatchedBlocks, ...]
    table_groups: tuple[int, ...]  # the shared one-wire groups in the batched blocks' table
    conj_table: bool  # whether that table also holds their conjugates
    gate_ref: dict[int, GateRef]  # where each parameterised gate's matrix sits
    dtype: torch.dtype
    device: torch.device

    @property
    def batched_steps(self) -> frozenset[int]:
        """The steps whose matrices are built together."""
        return frozenset(i for b in self.batched for i in b.steps)


# -- the compiler ----------------------------------------------------------------------------


def caster(dtype: torch.dtype, device: torch.device) -> Cast:
    """numpy arrays as tensors of the run dtype (real part only for a real dtype)."""
    return lambda a: torch.as_tensor(a if dtype.is_complex else a.real, dtype=dtype, device=device)


def compile_schedule(circuit: Circuit, ops: Sequence[Op], group: int, dtype: torch.dtype, device: torch.device,
                     block_qubits: int) -> FusedSchedule:
    """The typed schedule of `ops` (on circuit.n_qubits * group wires) with blocks of `block_qubits` wires."""
    n = circuit.n_qubits * group
    fusion = schedule(ops, n, block_qubits, group)
    cast = caster(dtype, device)
    groups, gate_ref = _gate_groups(circuit, ops, device)
    prefix = _prefix(ops, fusion, group, cast)
    steps = tuple(_step(ops, item, n, gate_ref, cast, device) for item in fusion.ops)
    table_groups = tuple(g for g, gg in enumerate(groups)
                         if gg.source == "wc" and len(circuit.gates[gg.gates[0]].wires) == 1)
    batched = _batched_blocks(steps, groups, table_groups, cast, device)
    positions = _prefix_positions(ops, prefix, groups, gate_ref, device) if group == 1 else None
    start = torch.stack([p.start for p in prefix]) if prefix else torch.ones(0, 2**group, dtype=dtype, device=device)
    return FusedSchedule(n, group, tuple(ops), fusion, groups, prefix, positions, start, steps, batched, table_groups,
                         any(op.conj for op in ops), gate_ref, dtype, device)


def _gate_groups(circuit: Circuit, ops: Sequence[Op],
                 device: torch.device) -> tuple[tuple[GateGroup, ...], dict[int, GateRef]]:
    """Parameterised gates grouped by name and source (built per call), and where each gate's matrix sits."""
    pi = ParamIndex(circuit)
    by_key: dict[tuple[str, bool], list[int]] = {}
    for gi in sorted({op.gate for op in ops if op.gate is not None}):
        g = circuit.gates[gi]
        by_key.setdefault((g.name, any(p.source == "input" for p in g.params)), []).append(gi)
    groups: list[GateGroup] = []
    where: dict[int, GateRef] = {}
    for (name, per_row), gis in by_key.items():
        slots = np.array([[pi.slots[gi, p] for p in range(len(circuit.gates[gi].params))] for gi in gis])
        local = slots if per_row else slots - pi.n_inputs
        index = torch.as_tensor(local.reshape(-1), dtype=torch.long, device=device)
        for j, gi in enumerate(gis):
            where[gi] = GateRef(len(groups), j, False)
        groups.append(GateGroup(name, "all" if per_row else "wc", index, tuple(local.shape), tuple(gis)))
    return tuple(groups), where


def _ref(gate_ref: dict[int, GateRef], op: Op) -> GateRef:
    assert op.gate is not None
    return gate_ref[op.gate]._replace(conj=op.conj)


def _prefix(ops: Sequence[Op], fusion: Schedule, group: int, cast: Cast) -> tuple[PrefixWire, ...]:
    """Each group's starting operators; those before its first parameterised one are applied now."""
    out: list[PrefixWire] = []
    for q, indices in enumerate(fusion.prefix):
        v = np.zeros(2**group, dtype=complex)
        v[0] = 1
        live: list[int] = []
        for i in indices:
            op = ops[i]
            if op.const is not None and not live:
                v = embed(group, [w - group * q for w in op.wires], op.const).reshape(2**group, 2**group) @ v
            else:
                live.append(i)
        out.append(PrefixWire(tuple(live), cast(v)))
    return tuple(out)


def _step(ops: Sequence[Op], item: Block | Wide | Permutation, n: int, gate_ref: dict[int, GateRef], cast: Cast,
          device: torch.device) -> Step:
    """One fused operation as a step: constant matrices folded now, parameterised gates kept as references."""
    if isinstance(item, Permutation):
        return _gather(ops, item.gates, n, cast, device)
    if isinstance(item, Wide):
        op = ops[item.gate]
        d = 2 ** len(op.wires)
        if op.const is not None:
            pattern = tuple(tuple(bool(e) for e in row) for row in np.abs(op.const) > 0)
            return WideStep(op.wires, ConstSegment(cast(op.const)), pattern)
        return WideStep(op.wires, GateSegment(_ref(gate_ref, op), None), ((True,) * d,) * d)
    segs: list[Segment] = []
    pending: np.ndarray | None = None
    for i in item.gates:
        op = ops[i]
        local = tuple(w - item.lo for w in op.wires)
        if op.const is not None:
            full = embed(item.k, local, op.const).reshape(2**item.k, 2**item.k)
            pending = full if pending is None else full @ pending
            continue
        if pending is not None:
            segs.append(ConstSegment(cast(pending)))
            pending = None
        segs.append(GateSegment(_ref(gate_ref, op), local))
    if pending is not None:
        segs.append(ConstSegment(cast(pending)))
    return BlockStep(item.lo, item.k, _layers(segs))


def _layers(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """Merge runs of parameterised one-wire gates on distinct wires into layers."""
    out: list[Segment] = []
    for seg in segments:
        one_wire = isinstance(seg, GateSegment) and seg.wires is not None and len(seg.wires) == 1
        if not one_wire:
            out.append(seg)
            continue
        assert isinstance(seg, GateSegment) and seg.wires is not None
        last = out[-1] if out else None
        if isinstance(last, LayerSegment) and seg.wires[0] not in last.gates:
            last.gates[seg.wires[0]] = seg.gate
        else:
            out.append(LayerSegment({seg.wires[0]: seg.gate}))
    return tuple(out)


def _gather(ops: Sequence[Op], indices: Sequence[int], n: int, cast: Cast, device: torch.device) -> GatherStep:
    """Constant monomial operators as out[i] = phase[i] x[source[i]]: for U, U^H and U^T."""
    to = np.arange(2**n)  # where each basis state has gone
    phase = np.ones(2**n, dtype=complex)
    for i in indices:
        m = ops[i].const
        assert m is not None
        shifts = [n - 1 - w for w in ops[i].wires]
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

    def index(a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    def phases(p: np.ndarray) -> Tensor | None:
        return None if np.allclose(p, 1, rtol=0, atol=1e-15) else cast(p).view(-1, 1)

    back = index(to)
    return GatherStep(Gather(index(source), phases(phase[source])), Gather(back, phases(phase.conj())),
                      Gather(back, phases(phase)))


def _batched_blocks(steps: Sequence[Step], groups: Sequence[GateGroup], table_groups: Sequence[int], cast: Cast,
                    device: torch.device) -> tuple[BatchedBlocks, ...]:
    """Blocks made only of constants and layers of shared one-wire gates, built together per width: their
    segments padded with identities into one (blocks, segments, K, K) tensor whose layer slots are filled per
    call by kron products of gates looked up in one table, then multiplied in a tree."""
    # the table: identity, then each shared one-wire group's matrices, then their conjugates
    offset, at = {}, 1
    for g in table_groups:
        offset[g] = at
        at += len(groups[g].gates)
    conj_shift = at - 1
    eligible: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        if not isinstance(step, BlockStep):
            continue
        ok = all(isinstance(seg, ConstSegment) or (isinstance(seg, LayerSegment) and
                                                   all(r.group in offset for r in seg.gates.values()))
                 for seg in step.segments)
        if ok and any(isinstance(seg, LayerSegment) for seg in step.segments):
            eligible.setdefault(step.k, []).append(i)
    out: list[BatchedBlocks] = []
    for k, members in eligible.items():
        K = 2**k
        blocks = [steps[i] for i in members]
        S = max(len(b.segments) for b in blocks if isinstance(b, BlockStep))
        consts = np.broadcast_to(np.eye(K, dtype=complex), (len(members), S, K, K)).copy()
        slots, table_index = [], []
        for b, block in enumerate(blocks):
            assert isinstance(block, BlockStep)
            for s_, seg in enumerate(block.segments):
                if isinstance(seg, ConstSegment):
                    consts[b, s_] = seg.matrix.cpu().numpy()
                    continue
                assert isinstance(seg, LayerSegment)
                slots.append(b * S + s_)
                row = []
                for w in range(k):
                    r = seg.gates.get(w)
                    row.append(0 if r is None else offset[r.group] + r.position + (conj_shift if r.conj else 0))
                table_index.append(row)
        out.append(BatchedBlocks(tuple(members), S, K, cast(consts.reshape(-1, K, K)),
                                 torch.as_tensor(np.array(slots), dtype=torch.long, device=device),
                                 torch.as_tensor(np.array(table_index), dtype=torch.long, device=device)))
    return tuple(out)


def _prefix_positions(ops: Sequence[Op], prefix: Sequence[PrefixWire], groups: Sequence[GateGroup],
                      gate_ref: dict[int, GateRef], device: torch.device) -> tuple[PrefixPosition, ...] | None:
    """When every wire's live prefix is the same number of parameterised one-wire gates, and at each position
    they share a source, the wires' vectors are built together: one lookup and product per position."""
    lives = [p.live for p in prefix]
    if not lives or len({len(live) for live in lives}) != 1:
        return None
    positions = []
    for j in range(len(lives[0])):
        refs = []
        for live in lives:
            op = ops[live[j]]
            if op.gate is None:
                return None
            refs.append(gate_ref[op.gate])
        used = sorted({r.group for r in refs})
        if len({groups[g].source for g in used}) != 1:
            return None
        offset = dict(zip(used, np.cumsum([0] + [len(groups[g].gates) for g in used])))
        index = [int(offset[r.group]) + r.position for r in refs]
        positions.append(PrefixPosition(tuple(used), torch.as_tensor(index, dtype=torch.long, device=device)))
    return tuple(positions)
