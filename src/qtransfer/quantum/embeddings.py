"""Feature maps for quantum kernels: named weightless circuits that embed a vector of angles as a state."""
from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Gate, Observable, inp, make_circuit
from qtransfer.quantum.gate_matrices import real_dtype
from qtransfer.quantum.statevector import CompiledCircuit
from qtransfer.registry import Registry

STATE_AMPLITUDES = 2**20  # embedding_states simulates this many amplitudes (samples x 2^n) per call by default


@dataclass(frozen=True)
class Embedding:
    """A weightless circuit whose inputs are the features x (N, n_qubits), then the products x_i * x_j of `pairs`;
    `method` is the engine path that simulates it fastest."""

    name: str
    circuit: Circuit
    pairs: tuple[tuple[int, int], ...] = ()
    method: str = "fused"

    @property
    def n_qubits(self) -> int:
        """Number of qubits, which is also the number of features."""
        return self.circuit.n_qubits

    def inputs(self, x: Tensor) -> Tensor:
        """The circuit's inputs (N, n_inputs) for features x (N, n_qubits)."""
        if x.dim() != 2 or x.shape[1] != self.n_qubits:
            raise InputError(
                f"embedding {self.name!r} on {self.n_qubits} qubits needs features of shape (N, {self.n_qubits}), "
                f"got {tuple(x.shape)}; reduce the features to {self.n_qubits} columns first (e.g. PCA)"
            )
        if not self.pairs:
            return x
        i, j = (torch.tensor(idx, device=x.device) for idx in zip(*self.pairs))
        return torch.cat([x, x[:, i] * x[:, j]], dim=1)


EmbeddingFn = Callable[[int], Embedding]
EMBEDDINGS: Registry[EmbeddingFn] = Registry("embedding")


def make_embedding(name: str, n_qubits: int) -> Embedding:
    """The named embedding on `n_qubits` qubits."""
    build = EMBEDDINGS.lookup(name)
    if n_qubits < 1:
        raise InputError(f"n_qubits must be >= 1, got {n_qubits}")
    return build(n_qubits)


@EMBEDDINGS.register("tutorial")
def tutorial(n_qubits: int) -> Embedding:
    """The reference circuit's embedding: H on every wire, then RY(x_i) on wire i."""
    return Embedding("tutorial", make_circuit("tutorial", n_qubits, 0), method="fused")


@EMBEDDINGS.register("iqp")
def iqp(n_qubits: int, n_repeats: int = 2) -> Embedding:
    """PennyLane's IQPEmbedding with all pairs: n_repeats x [H and RZ(x_i) per wire, then ZZ(x_i x_j) for i < j]."""
    n = n_qubits
    pairs = tuple(itertools.combinations(range(n), 2))
    layer = [g for i in range(n) for g in (Gate("H", (i,)), Gate("RZ", (i,), (inp(i),)))]
    # MultiRZ(t) on two wires is exp(-i t Z⊗Z / 2), which is IsingZZ(t)
    layer += [Gate("IsingZZ", pair, (inp(n + k),)) for k, pair in enumerate(pairs)]
    circuit = Circuit(n, n + len(pairs), (0,), tuple(layer * n_repeats), (Observable("Z", (0,)),), name="iqp")
    # Every gate reads an input: the dense path would build a 2^n x 2^n matrix per sample and moment, and the
    # fused path applies a per-sample matrix per pair; gate by gate is fastest up to 8 qubits (400 samples, 1 core).
    return Embedding("iqp", circuit, pairs, method="gates" if n <= 8 else "fused")


@functools.lru_cache(maxsize=16)
def _compiled(circuit: Circuit, dtype: torch.dtype, device: torch.device, method: str) -> CompiledCircuit:
    return CompiledCircuit(circuit, dtype=dtype, device=device, method=method)


def embedding_states(embedding: Embedding, x: Tensor, dtype: torch.dtype = torch.complex128,
                     chunk: int | None = None) -> Tensor:
    """The embedded states (N, 2^n) of features x (N, n_qubits), on x's device, `chunk` samples per simulation.

    `dtype` sets the precision; a real circuit (the tutorial embedding) gives real states.
    """
    n = embedding.n_qubits
    chunk = max(1, STATE_AMPLITUDES >> n) if chunk is None else chunk
    if chunk < 1:
        raise InputError(f"chunk must be >= 1 samples, got {chunk}")
    compiled = _compiled(embedding.circuit, dtype, x.device, embedding.method)
    inputs = embedding.inputs(x.to(real_dtype(dtype)))
    weights = torch.empty(0, dtype=real_dtype(dtype), device=x.device)
    with torch.no_grad():
        parts = [compiled.state(inputs[i : i + chunk], weights).reshape(-1, 2**n)
                 for i in range(0, inputs.shape[0], chunk)]
    if not parts:
        return torch.zeros(0, 2**n, dtype=compiled.dtype, device=x.device)
    return torch.cat(parts)
