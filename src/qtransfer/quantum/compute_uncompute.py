"""The compute-uncompute circuit U(x')^dagger U(x) of an embedding, and the fidelity kernel it measures under noise."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Gate, Param, const, inp
from qtransfer.quantum.density import DensityMatrixSimulator, NoiseModel
from qtransfer.quantum.embeddings import Embedding
from qtransfer.quantum.gate_matrices import real_dtype
from qtransfer.quantum.sampling import readout_probabilities

PAIR_AMPLITUDES = 2**20  # noisy_fidelity_kernel simulates this many density-matrix entries (pairs x 4^n) per call

SELF_INVERSE = {"H", "X", "Y", "Z", "CNOT", "CZ", "SWAP"}
FIXED_INVERSE = {"S": -math.pi / 2, "T": -math.pi / 4}  # S^dagger and T^dagger as PhaseShift angles


def _negated(p: Param, offset: int) -> Param:
    """The parameter of the inverse gate: a constant negated, an input read from column index + offset (which the
    caller fills with the negated inputs)."""
    if p.source == "const":
        return const(-p.value)
    if p.source == "input":
        return inp(p.index + offset)
    raise InputError("a compute-uncompute circuit needs a circuit without trainable weights (an embedding)")


def inverse_gate(g: Gate, offset: int) -> Gate:
    """g^dagger, its input parameters read `offset` columns further on (those columns hold negated inputs)."""
    if g.name in SELF_INVERSE:
        return g
    if g.name in FIXED_INVERSE:
        return Gate("PhaseShift", g.wires, (const(FIXED_INVERSE[g.name]),))
    params = tuple(_negated(p, offset) for p in g.params)
    # Rot(a, b, c) = RZ(c) RY(b) RZ(a), so its inverse is Rot(-c, -b, -a); the other rotations invert by negation
    return Gate(g.name, g.wires, params[::-1] if g.name == "Rot" else params)


def compute_uncompute(circuit: Circuit) -> Circuit:
    """U(x')^dagger U(x): `circuit` on inputs [0, m), then its inverse (gates reversed) on the negated inputs
    [m, 2m)."""
    m = circuit.n_inputs
    gates = circuit.gates + tuple(inverse_gate(g, m) for g in reversed(circuit.gates))
    return Circuit(circuit.n_qubits, 2 * m, (0,), gates, circuit.observables, name=f"{circuit.name}-compute-uncompute")


def noisy_fidelity_kernel(embedding: Embedding, a: Tensor, b: Tensor, noise: NoiseModel,
                          dtype: torch.dtype = torch.float64, chunk: int | None = None) -> Tensor:
    """The kernel (N_a, N_b) a noisy device measures for features a (N_a, n) and b (N_b, n): the probability of
    reading all zeros after U(b_j)^dagger U(a_i)|0>, on density matrices with `noise` after every gate of both
    halves and its readout error, `chunk` pairs per simulation. Noise makes the diagonal less than 1."""
    n = embedding.n_qubits
    chunk = max(1, PAIR_AMPLITUDES >> 2 * n) if chunk is None else chunk
    if chunk < 1:
        raise InputError(f"chunk must be >= 1 pairs, got {chunk}")
    rd = real_dtype(dtype)
    sim = DensityMatrixSimulator(compute_uncompute(embedding.circuit), noise, rd, a.device)
    left, right = embedding.inputs(a.to(rd)), -embedding.inputs(b.to(rd))
    weights = torch.empty(0, dtype=rd, device=a.device)
    n_b = right.shape[0]
    out = torch.empty(left.shape[0] * n_b, dtype=rd, device=a.device)
    with torch.no_grad():
        for start in range(0, out.shape[0], chunk):
            pair = torch.arange(start, min(start + chunk, out.shape[0]), device=a.device)
            inputs = torch.cat([left[pair // n_b], right[pair % n_b]], dim=1)
            probs = readout_probabilities(sim.probabilities(inputs, weights, len(pair)), n, *noise.readout)
            out[pair] = probs[:, 0]
    return out.view(left.shape[0], n_b)
