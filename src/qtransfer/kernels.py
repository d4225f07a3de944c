"""State-vector kernels on flat batched states (rows, 2^n): blocks on windows, wide gates, Z marginals.

Wire 0 is the most significant bit. A k-qubit block on wires lo .. lo+k-1 sees the state as
(rows * 2^lo, 2^k, 2^(n-lo-k)) without copying; every kernel writes into a given output buffer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def window(x: Tensor, n: int, lo: int, k: int) -> Tensor:
    """The view (rows * 2^lo, 2^k, 2^(n-lo-k)) of a flat state (rows, 2^n)."""
    return x.view(-1, 2**k, 2 ** (n - lo - k))


def apply_block(x: Tensor, out: Tensor, m: Tensor, n: int, lo: int, k: int) -> Tensor:
    """out = block m on wires [lo, lo+k) of x; m is (K, K) shared or (rows, K, K) per row."""
    rows = x.shape[0]
    K, R = 2**k, 2 ** (n - lo - k)
    if m.dim() == 2:
        if R == 1:
            return torch.mm(x.view(-1, K), m.mT, out=out.view(-1, K)).view_as(out)
        return torch.matmul(m, window(x, n, lo, k), out=window(out, n, lo, k)).view_as(out)
    if R == 1:
        return torch.bmm(x.view(rows, -1, K), m.mT, out=out.view(rows, -1, K)).view_as(out)
    if lo == 0:
        return torch.bmm(m, x.view(rows, K, R), out=out.view(rows, K, R)).view_as(out)
    shape = (rows, 2**lo, K, R)
    return torch.matmul(m.unsqueeze(1), x.view(shape), out=out.view(shape)).view_as(out)


def block_grad(lam: Tensor, psi: Tensor, n: int, lo: int, k: int, per_row: bool) -> Tensor:
    """Σ lam psi^H over everything but the block's two indices (and the rows when per_row): (K, K) or (rows, K, K)."""
    K, R = 2**k, 2 ** (n - lo - k)
    psi = psi.conj() if psi.is_complex() else psi
    if per_row:
        rows = lam.shape[0]
        a, b = lam.view(rows, -1, K, R), psi.view(rows, -1, K, R)
        if R == 1:
            return torch.bmm(a.view(rows, -1, K).mT, b.view(rows, -1, K))
        return torch.matmul(a, b.mT).sum(1)
    if R == 1:
        return torch.mm(lam.view(-1, K).mT, psi.view(-1, K))
    a, b = window(lam, n, lo, k), window(psi, n, lo, k)
    if R >= K:
        return torch.bmm(a, b.mT).sum(0)
    return torch.tensordot(a, b, dims=([0, 2], [0, 2]))


def _split(x: Tensor, n: int, wires: Sequence[int]) -> tuple[Tensor, list[int]]:
    """x viewed with each of `wires` as its own axis of size 2 (the others merged), and those axes."""
    order = sorted(wires)
    shape: list[int] = [x.shape[0]]
    prev = 0
    for w in order:
        shape += [2 ** (w - prev), 2]
        prev = w + 1
    shape.append(2 ** (n - prev))
    axes = {w: 2 + 2 * j for j, w in enumerate(order)}
    return x.view(shape), [axes[w] for w in wires]


def _slice(t: Tensor, axes: list[int], index: int) -> Tensor:
    """The strided slice of t where the bits of `index` (first axis most significant) sit on `axes`."""
    for j, axis in enumerate(axes):
        bit = (index >> (len(axes) - 1 - j)) & 1
        t = t.narrow(axis, bit, 1)
    return t


def apply_wide(x: Tensor, out: Tensor, m: Tensor, n: int, wires: Sequence[int], nonzero: Sequence[Sequence[bool]]) -> Tensor:
    """out = gate m (d, d) or (rows, d, d) on any `wires` of x, as a sum of strided slices of its `nonzero` entries."""
    tx, axes = _split(x, n, wires)
    to, _ = _split(out, n, wires)
    d = m.shape[-1]
    per_row = m.dim() == 3
    for i in range(d):
        dst = _slice(to, axes, i)
        first = True
        for j in range(d):
            if not nonzero[i][j]:
                continue
            c = m[:, i, j].view((-1,) + (1,) * (tx.dim() - 1)) if per_row else m[i, j]
            src = _slice(tx, axes, j)
            if first:
                torch.mul(src, c, out=dst)
                first = False
            else:
                dst.add_(src * c)
        if first:
            dst.zero_()
    return out


def wide_grad(lam: Tensor, psi: Tensor, n: int, wires: Sequence[int], d: int, per_row: bool) -> Tensor:
    """Σ lam psi^H of a wide gate, entry by entry: (d, d) or (rows, d, d)."""
    tl, axes = _split(lam, n, wires)
    tp, _ = _split(psi.conj() if psi.is_complex() else psi, n, wires)
    dims = list(range(1, tl.dim())) if per_row else list(range(tl.dim()))
    rows = [torch.stack([(_slice(tl, axes, i) * _slice(tp, axes, j)).sum(dims) for j in range(d)], -1)
            for i in range(d)]
    return torch.stack(rows, -2)


def apply_pauli(x: Tensor, n: int, paulis: str, wires: Sequence[int]) -> Tensor:
    """A Pauli product applied to a flat state (a new tensor)."""
    y = x
    for p, w in zip(paulis, wires):
        t = y.view(-1, 2, 2 ** (n - w - 1))
        if p == "X":
            t = t.flip(1)
        elif p == "Z":
            t = t * torch.tensor([1, -1], dtype=x.dtype, device=x.device).view(1, 2, 1)
        else:  # Y = [[0, -i], [i, 0]]
            t = t.flip(1) * torch.tensor([-1j, 1j], dtype=x.dtype, device=x.device).view(1, 2, 1)
        y = t.reshape(x.shape)
    return y
