"""Noise: channels after gates and readout error, simulated on batched density matrices in torch."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .circuits import Circuit, Gate
from .engine import apply_matrix
from .gate_matrices import complex_dtype, gate_matrix
from .params import ParamIndex, Sources
from .names import unknown_name


def _kraus_depolarizing(p: float) -> list[np.ndarray]:
    s = math.sqrt(p / 3)
    return [math.sqrt(1 - p) * np.eye(2), s * np.array([[0, 1], [1, 0]]), s * np.array([[0, -1j], [1j, 0]]),
            s * np.diag([1, -1])]


# Kraus operators of each channel, as PennyLane defines them (DepolarizingChannel, AmplitudeDamping, ...).
CHANNELS = {
    "depolarizing": _kraus_depolarizing,
    "amplitude_damping": lambda g: [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, math.sqrt(g)], [0, 0]])],
    "phase_damping": lambda g: [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, 0], [0, math.sqrt(g)]])],
    "bit_flip": lambda p: [math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.array([[0, 1], [1, 0]])],
    "phase_flip": lambda p: [math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.diag([1, -1])],
}


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
                raise ValueError(f"bad noise setting {item!r}: use channel=p[@GATE+GATE], or readout=p[/p10]")
            try:
                numbers = [float(v) for v in value.split("/")]
            except ValueError:
                raise ValueError(f"noise setting {item!r} needs a number in [0, 1]") from None
            if any(not 0 <= v <= 1 for v in numbers) or len(numbers) > (2 if key == "readout" else 1):
                raise ValueError(f"noise setting {item!r}: probabilities must lie in [0, 1]")
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

    def operations(self, circuit: Circuit, noisy_gates: int | None = None) -> list[tuple[str, object]]:
        """The circuit's gates with this model's channels inserted after the first `noisy_gates` (default all):
        ('gate', index) and ('kraus', (channel, p, wire)). Measurement-basis rotations come after those, ideal."""
        ops: list[tuple[str, object]] = []
        for i, g in enumerate(circuit.gates):
            ops.append(("gate", i))
            if noisy_gates is not None and i >= noisy_gates:
                continue
            for rule in self.rules:
                if rule.p > 0 and rule.applies_to(g):
                    ops += [("kraus", (rule.channel, rule.p, w)) for w in g.wires]
        return ops


class DensityMatrixSimulator:
    """A circuit with noise on batched density matrices; differentiable by torch autograd (checkpointed)."""

    def __init__(self, circuit: Circuit, noise: NoiseModel, dtype: torch.dtype, device: torch.device,
                 noisy_gates: int | None = None):
        """`dtype` is the real precision (float32 or float64); density matrices are complex."""
        self.circuit, self.noise, self.device = circuit, noise, device
        self.dtype = complex_dtype(dtype)
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=dtype, device=device)
        # Each gate and the channels after it act as one superoperator on its wires: 4^k x 4^k entries, one pass
        # over the density matrix instead of one per Kraus operator.
        self.steps: list[tuple[int, Tensor | None]] = []
        for kind, what in noise.operations(circuit, noisy_gates):
            if kind == "gate":
                self.steps.append((what, None))  # type: ignore[arg-type]
                continue
            name, p, wire = what  # type: ignore[misc]
            gi, before = self.steps[-1]
            after = _channel_superoperator(CHANNELS[name](p), circuit.gates[gi].wires.index(wire),
                                           len(circuit.gates[gi].wires))
            self.steps[-1] = (gi, after if before is None else after @ before)  # type: ignore[assignment]
        self.steps = [(gi, None if m is None else torch.as_tensor(m, dtype=self.dtype, device=device))
                      for gi, m in self.steps]
        self.gathers: dict[int, tuple[str, Tensor]] = {}
        for i, g in enumerate(circuit.gates):
            if g.params:
                source, local = self.pindex.locate(np.array([self.pindex.slots[i, p] for p in range(len(g.params))]))
                self.gathers[i] = (source, torch.as_tensor(local, device=device))

    CHUNK_BYTES = 2**31  # density matrices held at once when gradients are needed, per chunk of samples

    def probabilities(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Basis-state probabilities (batch, 2^n) of the noisy final state, in chunks of samples that fit."""
        n = self.circuit.n_qubits
        per_sample = 4**n * torch.finfo(self.dtype).bits // 4 * (2 * math.isqrt(len(self.steps)) + 2)
        chunk = max(1, self.CHUNK_BYTES // per_sample)
        if inputs is None or batch <= chunk:
            return self._probabilities(inputs, weights, batch)
        return torch.cat([self._probabilities(part, weights, len(part)) for part in inputs.split(chunk)])

    def _probabilities(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        n = self.circuit.n_qubits
        rho = torch.zeros((batch, 4**n), dtype=self.dtype, device=self.device)
        rho[:, 0] = 1
        rho = rho.view((batch,) + (2,) * (2 * n))
        segment = max(1, math.isqrt(len(self.steps)))
        grad = torch.is_grad_enabled() and (weights.requires_grad or (inputs is not None and inputs.requires_grad))
        for start in range(0, len(self.steps), segment):
            ops = self.steps[start:start + segment]
            if grad and n >= 6:  # keep only segment boundaries, recompute inside: memory ~ sqrt(operations)
                rho = checkpoint(self._run, rho, inputs, weights, ops, use_reentrant=False)
            else:
                rho = self._run(rho, inputs, weights, ops)
        diag = rho.reshape(batch, 2**n, 2**n).diagonal(dim1=1, dim2=2)
        return diag.real

    def _run(self, rho: Tensor, inputs: Tensor | None, weights: Tensor, steps: list) -> Tensor:
        n = self.circuit.n_qubits
        sources = Sources(inputs, weights, self.consts)
        for gi, channels in steps:
            g = self.circuit.gates[gi]
            params = None
            if gi in self.gathers:
                source, local = self.gathers[gi]
                params = sources[source].index_select(-1, local)
            u = gate_matrix(g.name, params, dtype=self.dtype, device=self.device)
            d = u.shape[-1]
            if u.dim() == 2:
                superop = torch.kron(u, u.conj())
            else:
                superop = torch.einsum("bij,bkl->bikjl", u, u.conj()).reshape(-1, d * d, d * d)
            if channels is not None:
                superop = channels @ superop
            rho = apply_matrix(rho, superop, [*g.wires, *(n + w for w in g.wires)])
        return rho


def _channel_superoperator(kraus: Sequence[np.ndarray], position: int, k: int) -> np.ndarray:
    """Σ K ⊗ K* of a one-qubit channel at `position` among a gate's k wires, on (rows, columns) of those wires."""
    out = 0
    for op in kraus:
        full = np.array([[1.0]])
        for j in range(k):
            full = np.kron(full, op if j == position else np.eye(2))
        out = out + np.kron(full, full.conj())
    return out
