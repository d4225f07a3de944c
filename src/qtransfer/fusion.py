"""Gate fusion at compile time: a circuit becomes a product-state prefix and a few k-qubit blocks.

Pure bookkeeping (no torch): which gates start each wire before it meets another wire (they make a
product state, built in one pass), and how the rest is grouped into blocks on windows of k adjacent
wires, each applied to the state with one matrix product. Gates wider than a window stay alone.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .circuits import Circuit, Gate


@dataclass(frozen=True)
class Block:
    """Gates (indices into the circuit, in order) acting only on wires lo .. lo + k - 1."""

    lo: int
    k: int
    gates: tuple[int, ...]


@dataclass(frozen=True)
class Wide:
    """One gate whose wires do not fit in a window; applied to strided slices of the state."""

    gate: int


@dataclass(frozen=True)
class Permutation:
    """Constant gates that only permute basis states and multiply them by phases, applied as one gather."""

    gates: tuple[int, ...]


MONOMIAL = frozenset({"X", "Y", "Z", "S", "T", "CNOT", "CZ", "SWAP"})


@dataclass(frozen=True)
class Schedule:
    """What the fused simulation runs: per-wire prefix gates, then blocks and wide gates in order."""

    n_qubits: int
    block_qubits: int
    prefix: tuple[tuple[int, ...], ...]
    ops: tuple[Block | Wide | Permutation, ...]

    def count(self, kind: type) -> int:
        """Number of operations of one kind (Block, Wide or Permutation)."""
        return sum(isinstance(op, kind) for op in self.ops)


def product_prefix(circuit: Circuit) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """Single-qubit gates that act on a wire before any multi-qubit gate touches it, per wire; and the rest."""
    prefix: list[list[int]] = [[] for _ in range(circuit.n_qubits)]
    entangled: set[int] = set()
    rest: list[int] = []
    for i, g in enumerate(circuit.gates):
        if len(g.wires) == 1 and g.wires[0] not in entangled:
            prefix[g.wires[0]].append(i)
        else:
            entangled.update(g.wires)
            rest.append(i)
    return tuple(tuple(p) for p in prefix), rest


def _take(gates: Sequence[Gate], remaining: Sequence[int], fits: Callable[[Gate], bool], wires: range) -> list[int]:
    """The gates that `fits` accepts and whose earlier gates on their wires are taken too (up to the point
    where every wire in `wires` is blocked by a gate left behind)."""
    taken: list[int] = []
    blocked: set[int] = set()
    for i in remaining:
        g = gates[i]
        if blocked.isdisjoint(g.wires) and fits(g):
            taken.append(i)
            continue
        blocked.update(g.wires)
        if all(w in blocked for w in wires):
            break
    return taken


# Relative costs of one operation, in middle-window blocks (measured on a 2-core CPU, benchmarks/head_speed.py):
TAIL_COST = 2.0  # a window ending within TAIL_WIRES of the last wire: few columns per matrix product
TAIL_WIRES = 3
PERMUTATION_COST = 1.5  # one gather of whole sample rows


def fuse(circuit: Circuit, gate_indices: Sequence[int], block_qubits: int) -> tuple[Block | Wide | Permutation, ...]:
    """Group gates (indices, in order) into blocks of at most `block_qubits` adjacent wires and permutations,
    greedily: each step takes the operation that absorbs the most remaining gates per unit of cost."""
    n = circuit.n_qubits
    k = max(1, min(block_qubits, n))
    gates = circuit.gates
    remaining = list(gate_indices)
    ops: list[Block | Wide | Permutation] = []
    every = range(n)
    monomial = lambda g: g.name in MONOMIAL
    while remaining:
        best = _take(gates, remaining, monomial, every)
        best_lo, best_score = -1, len(best) / PERMUTATION_COST if len(best) > 1 else 0.0
        for lo in range(n - k + 1):
            taken = _take(gates, remaining, lambda g, lo=lo: all(lo <= w < lo + k for w in g.wires), range(lo, lo + k))
            score = len(taken) / (TAIL_COST if n - lo - k < TAIL_WIRES and lo > 0 else 1.0)
            if score > best_score:
                best, best_lo, best_score = taken, lo, score
        if not best_score:  # the first remaining gate spans more than k wires and permutes nothing alone
            ops.append(Permutation((remaining.pop(0),)) if monomial(gates[remaining[0]]) else Wide(remaining.pop(0)))
            continue
        ops.append(Permutation(tuple(best)) if best_lo < 0 else Block(best_lo, k, tuple(best)))
        chosen = set(best)
        remaining = [i for i in remaining if i not in chosen]
    return tuple(ops)


def schedule(circuit: Circuit, block_qubits: int) -> Schedule:
    """The fused schedule of `circuit` with blocks of `block_qubits` wires."""
    prefix, rest = product_prefix(circuit)
    return Schedule(circuit.n_qubits, block_qubits, prefix, fuse(circuit, rest, block_qubits))
