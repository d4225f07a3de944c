#!/usr/bin/env python
"""Fidelity-kernel Gram matrices: qtransfer's engine (states, then one matrix product) against PennyLane.

    OMP_NUM_THREADS=1 python benchmarks/kernel_gram.py --threads 1 --out kernel_gram.json

For each embedding and qubit count, the 400 x 400 Gram matrix |<psi(x_j)|psi(x_i)>|^2 of 400 seeded random
angle vectors (uniform in [0, 2 pi)), float64 / complex128 in both, timed in the same process:
qtransfer embeds every sample once (embedding_states) and forms all overlaps by one product (fidelity_kernel);
PennyLane's qml.kernels.square_kernel_matrix(X, kernel, assume_normalized_kernel=True) on default.qubit, with
kernel(x, y) = probs[0] of a qnode running the embedding of x then qml.adjoint of the embedding of y (the
documented recipe), evaluates the compute-uncompute circuit once for each pair i < j: N (N - 1) / 2 circuits,
the diagonal taken as 1. When that would exceed --budget seconds (judged from a few timed evaluations),
PennyLane builds the Gram matrix of the first m samples only (m as large as the budget allows) and its time is
scaled by the number of circuit evaluations, N (N - 1) / m (m - 1); both the measured and the extrapolated
times are recorded. "max_abs_diff" compares the two matrices on the entries PennyLane computed.
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch
from timing import best_of, emit, logged


def _pennylane_kernel(embedding: str, n_qubits: int):
    """kernel(x, y) = |<psi(y)|psi(x)>|^2 by PennyLane's compute-uncompute qnode on default.qubit."""
    import pennylane as qml

    wires = list(range(n_qubits))

    def embed(x):
        if embedding == "iqp":
            qml.IQPEmbedding(x, wires=wires, n_repeats=2)
        else:
            for w in wires:
                qml.Hadamard(w)
            qml.AngleEmbedding(x, wires=wires, rotation="Y")

    @qml.qnode(qml.device("default.qubit", wires=n_qubits))
    def circuit(x, y):
        embed(x)
        qml.adjoint(embed)(y)
        return qml.probs(wires=wires)

    return lambda x, y: circuit(x, y)[0]


def point(embedding: str, n_qubits: int, samples: int, budget: float) -> dict:
    """Our Gram matrix against PennyLane's (full or on a subset) at one embedding and qubit count."""
    import pennylane as qml

    from qtransfer.quantum.embeddings import embedding_states, make_embedding
    from qtransfer.quantum.gram import fidelity_kernel

    g = torch.Generator().manual_seed(n_qubits)
    x = torch.rand(samples, n_qubits, generator=g, dtype=torch.float64) * 2 * math.pi
    emb = make_embedding(embedding, n_qubits)
    states = embedding_states(emb, x)
    t_states = best_of(lambda: embedding_states(emb, x), 3)
    t_product = best_of(lambda: fidelity_kernel(states, states), 3)

    def gram() -> torch.Tensor:
        s = embedding_states(emb, x)
        return fidelity_kernel(s, s)

    t_ours = best_of(gram, 3)
    ours = fidelity_kernel(states, states).numpy()

    kernel = _pennylane_kernel(embedding, n_qubits)
    xs = x.numpy()
    kernel(xs[0], xs[1])  # warm-up
    probe = 5
    t = time.perf_counter()
    for i in range(probe):
        kernel(xs[i], xs[i + 1])
    per_eval = (time.perf_counter() - t) / probe
    pairs = samples * (samples - 1) // 2
    m = samples
    if per_eval * pairs > budget:
        m = max(2, int((1 + math.sqrt(1 + 8 * budget / per_eval)) / 2))
    t = time.perf_counter()
    theirs = np.asarray(qml.kernels.square_kernel_matrix(xs[:m], kernel, assume_normalized_kernel=True))
    t_measured = time.perf_counter() - t
    measured_pairs = m * (m - 1) // 2
    t_theirs = t_measured * pairs / measured_pairs
    return {
        "embedding": embedding, "qubits": n_qubits, "samples": samples,
        "qtransfer_s": t_ours, "qtransfer_states_s": t_states, "qtransfer_product_s": t_product,
        "pennylane_samples_timed": m, "pennylane_evaluations_timed": measured_pairs,
        "pennylane_measured_s": t_measured, "pennylane_s": t_theirs, "pennylane_extrapolated": m < samples,
        "pennylane_per_evaluation_s": t_measured / measured_pairs,
        "ratio": t_theirs / t_ours,
        "max_abs_diff": float(np.abs(ours[:m, :m] - theirs).max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--embeddings", nargs="+", default=["iqp", "tutorial"])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--budget", type=float, default=120.0, help="seconds of PennyLane per point before extrapolating")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import pennylane as qml

    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "pennylane": qml.__version__,
                    "threads": torch.get_num_threads()},
        "gram": [logged(point(e, n, args.samples, args.budget)) for e in args.embeddings for n in args.qubits],
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
