"""Gate fusion at compile time: a circuit becomes a product-state prefix and a few k-qubit blocks.

Pure bookkeeping (no torch): which gates start each wire before it meets another wire (they make a
product state, built in one pass), and how the rest is grouped into blocks on windows of k adjacent
wires, each applied to the state with one matrix product. Gates wider than a window stay alone.
"""
from __future__ import annotations

from collections.abc import Sequence
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
class Schedule:
    """What the fused simulation runs: per-wire prefix gates, then blocks and wide gates in order."""

    n_qubits: int
    block_qubits: int
    prefix: tuple[tuple[int, ...], ...]
    ops: tuple[Block | Wide, ...]

    @property
    def n_blocks(self) -> int:
        """Number of block matrix products (one pass over the state each)."""
        return sum(isinstance(op, Block) for op in self.ops)


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


def _window_take(gates: Sequence[Gate], remaining: Sequence[int], lo: int, hi: int) -> list[int]:
    """The gates a block on wires [lo, hi) can absorb: those inside it whose earlier gates on their wires it absorbs too."""
    taken: list[int] = []
    blocked: set[int] = set()
    for i in remaining:
        wires = gates[i].wires
        if blocked.isdisjoint(wires) and all(lo <= w < hi for w in wires):
            taken.append(i)
            continue
        blocked.update(wires)
        if all(w in blocked for w in range(lo, hi)):
            break
    return taken


def fuse(circuit: Circuit, gate_indices: Sequence[int], block_qubits: int) -> tuple[Block | Wide, ...]:
    """Group gates (indices, in order) into blocks of at most `block_qubits` adjacent wires, greedily:
    each step takes the window that absorbs the most of the remaining gates."""
    n = circuit.n_qubits
    k = max(1, min(block_qubits, n))
    gates = circuit.gates
    remaining = list(gate_indices)
    ops: list[Block | Wide] = []
    while remaining:
        best: list[int] = []
        best_lo = 0
        for lo in range(n - k + 1):
            taken = _window_take(gates, remaining, lo, lo + k)
            if len(taken) > len(best):
                best, best_lo = taken, lo
        if not best:  # the first remaining gate spans more than k wires
            ops.append(Wide(remaining.pop(0)))
            continue
        ops.append(Block(best_lo, k, tuple(best)))
        chosen = set(best)
        remaining = [i for i in remaining if i not in chosen]
    return tuple(ops)


def schedule(circuit: Circuit, block_qubits: int) -> Schedule:
    """The fused schedule of `circuit` with blocks of `block_qubits` wires."""
    prefix, rest = product_prefix(circuit)
    return Schedule(circuit.n_qubits, block_qubits, prefix, fuse(circuit, rest, block_qubits))
