"""Noise: channels after gates and readout error, simulated on batched density matrices in torch."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Gate
from qtransfer.quantum.fused import DensityFusedCircuit
from qtransfer.quantum.gate_matrices import complex_dtype, real_dtype
from qtransfer.registry import unknown_name


def _kraus_depolarizing(p: float) -> list[np.ndarray]:
    s = math.sqrt(p / 3)
    return [math.sqrt(1 - p) * np.eye(2), s * np.array([[0, 1], [1, 0]]), s * np.array([[0, -1j], [1j, 0]]),
            s * np.diag([1, -1])]


# Kraus operators of each channel, as PennyLane defines them (DepolarizingChannel, AmplitudeDamping, ...).
CHANNELS: dict[str, Callable[[float], list[np.ndarray]]] = {
    "depolarizing": _kraus_depolarizing,
    "amplitude_damping": lambda g: [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, math.sqrt(g)], [0, 0]])],
    "phase_damping": lambda g: [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, 0], [0, math.sqrt(g)]])],
    "bit_flip": lambda p: [math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.array([[0, 1], [1, 0]])],
    "phase_flip": lambda p: [math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.diag([1, -1])],
}


class Kraus(NamedTuple):
    """A one-qubit channel of strength p on `wire`."""

    channel: str
    p: float
    wire: int


@dataclass(frozen=True)
class NoiseRule:
    """A channel of strength p on every wire of each gate named in `gates` (all gates when empty), after it."""

    channel: str
    p: float
    gates: tuple[str, ...] = ()

    def applies_to(self, gate: Gate) -> bool:
        """Whether this rule adds its channel after `gate`."""
        return not self.gates or gate.name in self.gates


@dataclass(frozen=True)
class NoiseModel:
    """Channels after gates, and readout error: a 0 read as 1 with p01, a 1 read as 0 with p10."""

    rules: tuple[NoiseRule, ...] = ()
    readout: tuple[float, float] = (0.0, 0.0)
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> NoiseModel:
        """'depolarizing=0.01,amplitude_damping=0.02@CNOT,readout=0.03' (readout=P or P01/P10)."""
        rules, readout = [], (0.0, 0.0)
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            value, _, where = value.partition("@")
            if not eq:
                raise InputError(f"bad noise setting {item!r}: use channel=p[@GATE+GATE], or readout=p[/p10]")
            try:
                numbers = [float(v) for v in value.split("/")]
            except ValueError:
                raise InputError(f"noise setting {item!r} needs a number in [0, 1]") from None
            if any(not 0 <= v <= 1 for v in numbers) or len(numbers) > (2 if key == "readout" else 1):
                raise InputError(f"noise setting {item!r}: probabilities must lie in [0, 1]")
            if key == "readout":
                readout = (numbers[0], numbers[-1])
            elif key in CHANNELS:
                rules.append(NoiseRule(key, numbers[0], tuple(g for g in where.split("+") if g)))
            else:
                raise unknown_name("noise channel", key, [*CHANNELS, "readout"])
        return cls(tuple(rules), readout, text)

    @property
    def channels(self) -> bool:
        """Whether any channel acts on the state (else only readout error, and a pure state suffices)."""
        return any(r.p > 0 for r in self.rules)

    def operations(self, circuit: Circuit, noisy_gates: int | None = None) -> list[list[Kraus]]:
        """Per gate of the circuit, the channels this model inserts after it (after the first `noisy_gates`
        gates, default all, none). Measurement-basis rotations come after those, ideal."""
        ops: list[list[Kraus]] = []
        for i, g in enumerate(circuit.gates):
            ops.append([])
            if noisy_gates is not None and i >= noisy_gates:
                continue
            for rule in self.rules:
                if rule.p > 0 and rule.applies_to(g):
                    ops[-1] += [Kraus(rule.channel, rule.p, w) for w in g.wires]
        return ops


class DensityMatrixSimulator:
    """A circuit with noise on batched density matrices: the fused engine's schedule over the 2n wires of the
    vectorised density matrix, gates as U ⊗ conj(U) and channels as superoperators; its backward recomputes
    states from checkpoints (channels cannot be un-computed)."""

    def __init__(self, circuit: Circuit, noise: NoiseModel, dtype: torch.dtype, device: torch.device,
                 noisy_gates: int | None = None):
        """`dtype` is the precision (float32 or float64); arithmetic is real when the gates and channels are."""
        self.circuit, self.noise, self.device = circuit, noise, device
        channels = [[(k.wire, _channel_superoperator(CHANNELS[k.channel](k.p), 0, 1)) for k in after]
                    for after in noise.operations(circuit, noisy_gates)]
        real = circuit.real and all(np.isrealobj(m) or not np.abs(m.imag).any() for c in channels for _, m in c)
        self.dtype = real_dtype(dtype) if real else complex_dtype(dtype)
        self.sim = DensityFusedCircuit(circuit, self.dtype, torch.device(device), channels)

    def probabilities(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Basis-state probabilities (batch, 2^n) of the noisy final state, differentiable."""
        rows = 1 if inputs is None else batch
        probs = self.sim.run(inputs, weights, rows, observe=True)
        return probs.expand(batch, -1)


def _channel_superoperator(kraus: Sequence[np.ndarray], position: int, k: int) -> np.ndarray:
    """Σ K ⊗ K* of a one-qubit channel at `position` among a gate's k wires, on (rows, columns) of those wires."""
    out = np.zeros((4**k, 4**k), dtype=complex)
    for op in kraus:
        full = np.array([[1.0]])
        for j in range(k):
            full = np.kron(full, op if j == position else np.eye(2))
        out = out + np.kron(full, full.conj())
    return out
