"""The fused path per call: the small matrices (gates, product-state factors, each step's block), with autograd.

Gate matrices are built per group in one batched call; blocks made only of constants and layers of shared
one-wire gates are built together per width; the product-state vectors of all wires together when they can be.
With a model axis, gate matrices are (models, 1 or rows per model, gates, d, d) and blocks follow by broadcasting.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from qtransfer.quantum.fused_schedule import (
    BlockStep,
    ConstSegment,
    FusedSchedule,
    GateRef,
    GateSegment,
    LayerSegment,
    PrefixPosition,
    WideStep,
    caster,
)
from qtransfer.quantum.gate_matrices import gate_matrix
from qtransfer.quantum.params import Sources


def kron(a: Tensor, b: Tensor) -> Tensor:
    """kron(a, b) of the last two dimensions, leading dimensions broadcast."""
    d = a.shape[-1] * b.shape[-1]
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    return out.reshape(*out.shape[:-4], d, d)


def per_row(m: Tensor, rows: int) -> Tensor:
    """Matrices (models, 1 or rows per model, ..., d, d) as one per row (rows, ..., d, d); others unchanged."""
    if m.dim() < 4:
        return m
    return m.expand(m.shape[0], rows // m.shape[0], *m.shape[2:]).reshape(rows, *m.shape[2:])


def apply_local(p: Tensor, g: Tensor, wires: Sequence[int], k: int) -> Tensor:
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


def gate_matrices(s: FusedSchedule, sources: Sources) -> list[Tensor]:
    """Each gate group's matrices, (..., gates, d, d)."""
    mats = []
    for group in s.groups:
        params = torch.unflatten(sources[group.source].index_select(-1, group.slots), -1, group.shape)
        mats.append(gate_matrix(group.name, params, dtype=s.dtype, device=s.device))
    return mats


def gate(ref: GateRef, mats: Sequence[Tensor]) -> Tensor:
    """One gate's matrix (or its conjugate) from the groups' matrices."""
    m = mats[ref.group][..., ref.position, :, :]
    return m.conj() if ref.conj else m


def halves(s: FusedSchedule, mats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The product state's two factors, batch-last: wires [0, h) as (2^h, rows|1), wires [h, n) likewise."""
    if s.prefix_positions is not None:
        vecs = _prefix_together(s.prefix_positions, s.prefix_start, mats)
    else:
        vecs = _prefix_by_group(s, mats)

    def product(vs: list[Tensor]) -> Tensor:
        t = vs[0] if vs else torch.ones(1, 1, dtype=s.dtype, device=s.device)
        for v in vs[1:]:
            t = (t.unsqueeze(1) * v.unsqueeze(0)).flatten(0, 1)
        return t

    h = (len(vecs) + 1) // 2
    return product(vecs[:h]), product(vecs[h:])


def _prefix_together(positions: Sequence[PrefixPosition], start: Tensor, mats: Sequence[Tensor]) -> list[Tensor]:
    v = start  # (n, 2)
    for groups, rows in positions:
        table = torch.cat([mats[g] for g in groups], -3) if len(groups) > 1 else mats[groups[0]]
        v = (table.index_select(-3, rows) @ v.unsqueeze(-1)).squeeze(-1)  # (rows|-, n, 2)
    v = v.permute(1, 2, 0) if v.dim() == 3 else v.unsqueeze(-1)  # (n, 2, rows|1)
    return list(v.unbind(0))


def _prefix_by_group(s: FusedSchedule, mats: Sequence[Tensor]) -> list[Tensor]:
    vecs = []
    g = s.group
    cast = caster(s.dtype, s.device)
    for q, wire in enumerate(s.prefix):
        v = wire.start.unsqueeze(-1)  # (2^g, 1): a one-column matrix
        for i in wire.live:
            op = s.ops[i]
            if op.const is not None:
                m = cast(op.const)
            else:
                assert op.gate is not None
                m = gate(s.gate_ref[op.gate]._replace(conj=op.conj), mats)
            v = apply_local(v, m, [w - g * q for w in op.wires], g)
        v = v.squeeze(-1)
        vecs.append(v.T if v.dim() == 2 else v.unsqueeze(-1))  # (2^g, rows) or (2^g, 1)
    return vecs


def step_matrices(s: FusedSchedule, mats: Sequence[Tensor], rows: int) -> list[Tensor | None]:
    """Each step's matrix: (K, K) shared, (rows, K, K) per sample, or (models, 1 or rows per model, K, K);
    wide gates' per-model matrices are repeated over their rows; None for gathers."""
    out: list[Tensor | None] = []
    batched = _batched_matrices(s, mats)
    for i, step in enumerate(s.steps):
        if i in batched:
            out.append(batched[i])
        elif isinstance(step, WideStep):
            seg = step.segment
            p = seg.matrix if isinstance(seg, ConstSegment) else gate(seg.gate, mats)
            out.append(per_row(p, rows) if p.dim() == 4 else p)
        elif isinstance(step, BlockStep):
            out.append(_block_matrix(s, step, mats))
        else:
            out.append(None)
    return out


def _block_matrix(s: FusedSchedule, step: BlockStep, mats: Sequence[Tensor]) -> Tensor:
    p: Tensor | None = None
    for seg in step.segments:
        if isinstance(seg, ConstSegment):
            p = seg.matrix if p is None else seg.matrix @ p
        elif isinstance(seg, LayerSegment):
            layer = _layer(s, seg, step.k, mats)
            p = layer if p is None else layer @ p
        else:
            assert isinstance(seg, GateSegment) and seg.wires is not None
            eye = torch.eye(2**step.k, dtype=s.dtype, device=s.device)
            p = apply_local(eye if p is None else p, gate(seg.gate, mats), seg.wires, step.k)
    assert p is not None
    return p


def _layer(s: FusedSchedule, seg: LayerSegment, k: int, mats: Sequence[Tensor]) -> Tensor:
    """The kron product over a block's k wires of one-wire gates (identity where none acts)."""
    eye = torch.eye(2, dtype=s.dtype, device=s.device)
    out: Tensor | None = None
    for w in range(k):
        f = gate(seg.gates[w], mats) if w in seg.gates else eye
        out = f if out is None else kron(out, f)
    assert out is not None
    return out


def _batched_matrices(s: FusedSchedule, mats: Sequence[Tensor]) -> dict[int, Tensor]:
    """The matrices of the blocks built together (see fused_schedule.BatchedBlocks), by step; with a model axis
    the gate matrices (models, 1, gates, 2, 2) give blocks (models, 1, K, K)."""
    if not s.batched:
        return {}
    lead = mats[s.table_groups[0]].shape[:-3]
    parts = [torch.eye(2, dtype=s.dtype, device=s.device).expand(*lead, 1, 2, 2)]
    parts += [mats[g] for g in s.table_groups]
    if s.conj_table:
        parts += [mats[g].conj() for g in s.table_groups]
    table = torch.cat(parts, -3)
    out: dict[int, Tensor] = {}
    for b in s.batched:
        K = b.size
        factors = table[..., b.table_index, :, :]  # (..., layers, k, 2, 2)
        layer = factors[..., 0, :, :]
        for w in range(1, factors.shape[-3]):
            layer = kron(layer, factors[..., w, :, :])
        segs = b.consts.expand(*lead, *b.consts.shape).index_copy(len(lead), b.slots, layer)
        segs = segs.view(*lead, len(b.steps), b.segments, K, K)
        while segs.shape[-3] > 1:
            if segs.shape[-3] % 2:
                eye = torch.eye(K, dtype=s.dtype, device=s.device).expand(*lead, len(b.steps), 1, K, K)
                segs = torch.cat([segs, eye], -3)
            segs = segs[..., 1::2, :, :] @ segs[..., 0::2, :, :]  # later segments act after earlier ones
        out.update(zip(b.steps, segs[..., 0, :, :].unbind(-3)))
    return out
