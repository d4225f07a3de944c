"""Gate fusion at compile time: a list of operators becomes a product-state prefix and a few k-wire blocks.

Pure bookkeeping (no torch): which operators start each group of wires before it meets another group (they
make a product state, built in one pass), and how the rest is grouped into blocks on windows of k adjacent
wires, each applied to the state with one matrix product, and permutations (constant operators that only
move basis states and multiply them by phases, applied as one gather). Operators wider than a window and
not permutations stay alone. A group is one wire for state vectors, and a qubit's row and column wires
for density matrices.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Operator(Protocol):
    """What fusion needs of an operator: its wires, and whether it is a constant monomial matrix."""

    @property
    def wires(self) -> tuple[int, ...]: ...

    @property
    def monomial(self) -> bool: ...


def is_monomial(m: np.ndarray) -> bool:
    """Whether every column of `m` has exactly one nonzero entry (a permutation with phases)."""
    return bool(np.all((np.abs(m) > 0).sum(0) == 1) and np.all((np.abs(m) > 0).sum(1) == 1))


@dataclass(frozen=True)
class Block:
    """Operators (indices, in order) acting only on wires lo .. lo + k - 1."""

    lo: int
    k: int
    gates: tuple[int, ...]


@dataclass(frozen=True)
class Wide:
    """One operator whose wires do not fit in a window; applied to strided slices of the state."""

    gate: int


@dataclass(frozen=True)
class Permutation:
    """Constant operators that only permute basis states and multiply them by phases, applied as one gather."""

    gates: tuple[int, ...]


@dataclass(frozen=True)
class Schedule:
    """What the fused simulation runs: per-group prefix operators, then blocks, permutations and wide operators."""

    n_wires: int
    block_wires: int
    prefix: tuple[tuple[int, ...], ...]
    ops: tuple[Block | Wide | Permutation, ...]

    def count(self, kind: type) -> int:
        """Number of operations of one kind (Block, Wide or Permutation)."""
        return sum(isinstance(op, kind) for op in self.ops)


def product_prefix(ops: Sequence[Operator], n_wires: int,
                   group: int = 1) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """Operators inside one group of `group` wires that come before anything joins the group to another,
    per group; and the rest (indices, in order)."""
    prefix: list[list[int]] = [[] for _ in range(n_wires // group)]
    entangled: set[int] = set()
    rest: list[int] = []
    for i, op in enumerate(ops):
        groups = {w // group for w in op.wires}
        if len(groups) == 1 and not groups & entangled:
            prefix[groups.pop()].append(i)
        else:
            entangled.update(groups)
            rest.append(i)
    return tuple(tuple(p) for p in prefix), rest


def _take(ops: Sequence[Operator], remaining: Sequence[int], fits: Callable[[Operator], bool],
          wires: range) -> list[int]:
    """The operators that `fits` accepts and whose earlier operators on their wires are taken too (up to the
    point where every wire in `wires` is blocked by one left behind)."""
    taken: list[int] = []
    blocked: set[int] = set()
    for i in remaining:
        g = ops[i]
        if blocked.isdisjoint(g.wires) and fits(g):
            taken.append(i)
            continue
        blocked.update(g.wires)
        if all(w in blocked for w in wires):
            break
    return taken


def _within(lo: int, k: int) -> Callable[[Operator], bool]:
    """Whether an operator acts only on wires lo .. lo + k - 1."""
    return lambda g: all(lo <= w < lo + k for w in g.wires)


# Relative costs of one operation, in middle-window blocks (measured on a 2-core CPU, benchmarks/head_speed.py):
TAIL_COST = 2.0  # a window ending within TAIL_WIRES of the last wire: few columns per matrix product
TAIL_WIRES = 3
PERMUTATION_COST = 1.5  # one gather of whole sample rows


def fuse(ops: Sequence[Operator], indices: Sequence[int], n_wires: int,
         block_wires: int) -> tuple[Block | Wide | Permutation, ...]:
    """Group operators (indices, in order) into blocks of at most `block_wires` adjacent wires and permutations,
    greedily: each step takes the operation that absorbs the most remaining operators per unit of cost."""
    n = n_wires
    k = max(1, min(block_wires, n))
    remaining = list(indices)
    out: list[Block | Wide | Permutation] = []
    every = range(n)
    while remaining:
        best = _take(ops, remaining, lambda g: g.monomial, every)
        best_lo, best_score = -1, len(best) / PERMUTATION_COST if len(best) > 1 else 0.0
        for lo in range(n - k + 1):
            taken = _take(ops, remaining, _within(lo, k), range(lo, lo + k))
            score = len(taken) / (TAIL_COST if n - lo - k < TAIL_WIRES and lo > 0 else 1.0)
            if score > best_score:
                best, best_lo, best_score = taken, lo, score
        if not best_score:  # the first remaining operator spans more than k wires and permutes nothing alone
            first = remaining.pop(0)
            out.append(Permutation((first,)) if ops[first].monomial else Wide(first))
            continue
        out.append(Permutation(tuple(best)) if best_lo < 0 else Block(best_lo, k, tuple(best)))
        chosen = set(best)
        remaining = [i for i in remaining if i not in chosen]
    return tuple(out)


def schedule(ops: Sequence[Operator], n_wires: int, block_wires: int, group: int = 1) -> Schedule:
    """The fused schedule of `ops` on `n_wires` wires with blocks of `block_wires` wires."""
    prefix, rest = product_prefix(ops, n_wires, group)
    return Schedule(n_wires, block_wires, prefix, fuse(ops, rest, n_wires, block_wires))
