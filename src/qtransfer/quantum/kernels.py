"""State-vector kernels on batch-last states: blocks on windows of wires, wide gates, Pauli products.

A state of n qubits for `rows` samples is stored as (outer, 2^n, rows): the sample index is the fastest,
wire 0 the slowest bit, and `outer` stacks independent states (the adjoint sweep keeps the state and its
gradient as outer = 2). A k-qubit block on wires lo .. lo+k-1 then sees the state as
(outer * 2^lo, 2^k, 2^(n-lo-k) * rows) without copying, and one matrix product applies it; with the
samples innermost every product has at least `rows` columns. Every kernel writes into a given buffer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

GRAD_CHUNK = 2**18  # entries of the per-slice products a block's gradient sums at once
MIN_COLUMNS = 16  # below this many columns per product, the block is applied as kron(m, I) to whole rows


def window(x: Tensor, n: int, lo: int, k: int, rows: int) -> Tensor:
    """The view (outer * 2^lo, 2^k, 2^(n-lo-k) * rows) of a batch-last state."""
    return x.view(-1, 2**k, 2 ** (n - lo - k) * rows)


def apply_block(x: Tensor, out: Tensor, m: Tensor, n: int, lo: int, k: int, rows: int) -> Tensor:
    """out = block m on wires [lo, lo+k) of x; m is (K, K) shared, (rows, K, K) per sample, or
    (models, G, K, K) per group of rows / (models * G) consecutive samples."""
    K, C = 2**k, 2 ** (n - lo - k) * rows
    if m.dim() == 3:
        return _apply_per_sample(x, out, m, n, lo, k, rows)
    if m.dim() == 4:
        return _apply_grouped(x, out, m.reshape(-1, K, K), n, lo, k, rows)
    xv, ov = window(x, n, lo, k, rows), window(out, n, lo, k, rows)
    if xv.shape[0] == 1:
        torch.mm(m, xv[0], out=ov[0])
    elif C >= MIN_COLUMNS:
        torch.matmul(m, xv, out=ov)
    else:
        eye = torch.eye(C, dtype=m.dtype, device=m.device)
        wide = (m[:, None, :, None] * eye[None, :, None, :]).reshape(K * C, K * C)
        torch.mm(x.view(-1, K * C), wide.mT, out=out.view(-1, K * C))
    return out


def _apply_per_sample(x: Tensor, out: Tensor, m: Tensor, n: int, lo: int, k: int, rows: int) -> Tensor:
    K = 2**k
    xv = x.view(-1, K, 2 ** (n - lo - k), rows)
    out.view(-1, K, 2 ** (n - lo - k), rows).copy_(torch.einsum("bij,ljrb->lirb", m, xv))
    return out


def _apply_grouped(x: Tensor, out: Tensor, m: Tensor, n: int, lo: int, k: int, rows: int) -> Tensor:
    K, G = 2**k, m.shape[0]
    shape = (-1, K, 2 ** (n - lo - k), G, rows // G)
    out.view(shape).copy_(torch.einsum("gij,ljrgb->lirgb", m, x.view(shape)))
    return out


def block_grad_grouped(lam: Tensor, psi: Tensor, n: int, lo: int, k: int, rows: int, groups: int) -> Tensor:
    """Σ lam psi^T over everything but the block's two indices, per group of rows / groups consecutive samples."""
    shape = (-1, 2**k, 2 ** (n - lo - k), groups, rows // groups)
    return torch.einsum("lirgb,ljrgb->gij", lam.view(shape), psi.view(shape))


def block_grad(lam: Tensor, psi: Tensor, n: int, lo: int, k: int, rows: int, per_sample: bool) -> Tensor:
    """Σ lam psi^T over everything but the block's two indices (and the samples when per_sample)."""
    K = 2**k
    if per_sample:
        a, b = lam.view(-1, K, 2 ** (n - lo - k), rows), psi.view(-1, K, 2 ** (n - lo - k), rows)
        return torch.einsum("lirb,ljrb->bij", a, b)
    a, b = window(lam, n, lo, k, rows), window(psi, n, lo, k, rows)
    if a.shape[0] == 1:
        return torch.mm(a[0], b[0].mT)
    if a.shape[2] >= K:  # per-slice products summed, in chunks so the (slices, K, K) temporary stays small
        step = max(1, GRAD_CHUNK // (K * K))
        out = torch.bmm(a[:step], b[:step].mT).sum(0)
        for i in range(step, a.shape[0], step):
            out += torch.bmm(a[i : i + step], b[i : i + step].mT).sum(0)
        return out
    summed: Tensor = torch.tensordot(a, b, dims=([0, 2], [0, 2]))
    return summed


def _split(x: Tensor, n: int, wires: Sequence[int], rows: int) -> tuple[Tensor, list[int]]:
    """x viewed with each of `wires` as its own axis of size 2, and those axes (in the order of `wires`)."""
    order = sorted(wires)
    shape: list[int] = [-1]
    prev = 0
    for w in order:
        shape += [2 ** (w - prev), 2]
        prev = w + 1
    shape += [2 ** (n - prev), rows]
    axes = {w: 2 + 2 * j for j, w in enumerate(order)}
    return x.view(shape), [axes[w] for w in wires]


def _slice(t: Tensor, axes: list[int], index: int) -> Tensor:
    """The strided slice of t where the bits of `index` (first axis most significant) sit on `axes`."""
    for j, axis in enumerate(axes):
        t = t.narrow(axis, (index >> (len(axes) - 1 - j)) & 1, 1)
    return t


def apply_wide(x: Tensor, out: Tensor, m: Tensor, n: int, wires: Sequence[int], rows: int,
               nonzero: Sequence[Sequence[bool]]) -> Tensor:
    """out = gate m (d, d) or (rows, d, d) on any `wires` of x, as a sum over strided slices of its nonzero entries."""
    tx, axes = _split(x, n, wires, rows)
    to, _ = _split(out, n, wires, rows)
    d = m.shape[-1]
    for i in range(d):
        dst = _slice(to, axes, i)
        terms = [j for j in range(d) if nonzero[i][j]]
        if not terms:
            dst.zero_()
        for t, j in enumerate(terms):
            c = m[:, i, j] if m.dim() == 3 else m[i, j]
            src = _slice(tx, axes, j)
            if t == 0:
                torch.mul(src, c, out=dst)
            else:
                dst.add_(src * c)
    return out


def wide_grad(lam: Tensor, psi: Tensor, n: int, wires: Sequence[int], rows: int, d: int, per_sample: bool) -> Tensor:
    """Σ lam psi^T of a wide gate, entry by entry: (d, d) or (rows, d, d)."""
    tl, axes = _split(lam, n, wires, rows)
    tp, _ = _split(psi, n, wires, rows)
    dims = list(range(tl.dim() - 1)) if per_sample else list(range(tl.dim()))
    entries = [[(_slice(tl, axes, i) * _slice(tp, axes, j)).sum(dims) for j in range(d)] for i in range(d)]
    return torch.stack([torch.stack(row, -1) for row in entries], -2)


def apply_pauli(x: Tensor, n: int, paulis: str, wires: Sequence[int], rows: int) -> Tensor:
    """A Pauli product applied to a batch-last state (a new tensor)."""
    y = x
    for p, w in zip(paulis, wires):
        t = y.view(2**w, 2, -1)
        if p == "X":
            t = t.flip(1)
        elif p == "Z":
            t = t * torch.tensor([1, -1], dtype=x.dtype, device=x.device).view(1, 2, 1)
        else:  # Y = [[0, -i], [i, 0]]
            t = t.flip(1) * torch.tensor([-1j, 1j], dtype=x.dtype, device=x.device).view(1, 2, 1)
        y = t.reshape(x.shape)
    return y
