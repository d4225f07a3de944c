#!/usr/bin/env python
"""Speed of the noisy and finite-shot paths: density matrices against PennyLane default.mixed, and shots.

    python benchmarks/noise_speed.py --threads 1 --out noise_speed.json

Density matrices: the tutorial circuit (depth 6) with depolarizing noise (p = 0.01) after every gate, one
forward + backward pass (loss = sum of the expectation values, gradients for inputs and weights) at batch 32,
float64 in both; qtransfer's built-in engine against PennyLane default.mixed with backprop, which runs one
sample at a time (its broadcasting over a batch of density matrices is not used by the torch interface).
Both are timed in the same process; the ratio is default.mixed time / qtransfer time. Configurations whose
default.mixed time would exceed --budget seconds are timed on fewer samples and scaled (recorded).

Shots: one evaluation of a trained-size head's circuit on the 153 validation samples with 1024 shots per
expectation value (statevector + sampling), and the same with parameter-shift gradients for a batch of 4.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from timing import best_of, emit, logged


def density_point(n_qubits: int, batch: int, budget: float) -> dict:
    """qtransfer vs default.mixed at one qubit count."""
    import pennylane as qml

    from qtransfer import make_circuit
    from qtransfer.quantum.backends import TorchBackend
    from qtransfer.quantum.density import NoiseModel

    circuit = make_circuit("tutorial", n_qubits, 6)
    noise = NoiseModel.parse("depolarizing=0.01")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, n_qubits, generator=g, dtype=torch.float64) - 0.5) * 3
    w = torch.randn(circuit.n_weights, generator=g, dtype=torch.float64) * 0.1
    ours = TorchBackend(noise=noise)

    def run_ours():
        xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
        ours(circuit, xx, ww).sum().backward()

    small = n_qubits <= 8
    t_ours = best_of(run_ours, 3 if small else 1, warm_up=small)

    dev = qml.device("default.mixed", wires=n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def qnode(xi, ww):
        for gate in circuit.gates:
            params = [xi[p.index] if p.source == "input" else ww[p.index] if p.source == "weight"
                      else torch.tensor(p.value, dtype=torch.float64) for p in gate.params]
            {"H": qml.Hadamard}.get(gate.name, getattr(qml, gate.name))(*params, wires=list(gate.wires))
            for wire in gate.wires:
                qml.DepolarizingChannel(0.01, wires=wire)
        return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]

    def run_theirs(samples: int):
        ww = w.clone().requires_grad_()
        xs = x[:samples].clone().requires_grad_()
        torch.stack([torch.stack(list(qnode(xi, ww))) for xi in xs]).sum().backward()

    t = time.perf_counter()
    run_theirs(1)
    one = time.perf_counter() - t
    samples = batch if one * batch <= budget else max(1, int(budget / max(one, 1e-9)))
    t_theirs = best_of(lambda: run_theirs(samples), 1, warm_up=False) * batch / samples
    return {"qubits": n_qubits, "batch": batch, "qtransfer_s": t_ours, "default_mixed_s": t_theirs,
            "default_mixed_samples_timed": samples, "ratio": t_theirs / t_ours}


def shots_point(shots: int) -> dict:
    """A 4-qubit depth-6 head's circuit on 153 samples with `shots` shots, and a parameter-shift step."""
    from qtransfer import make_circuit
    from qtransfer.quantum.backends import TorchBackend

    circuit = make_circuit("tutorial", 4, 6)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(153, 4, generator=g) - 0.5) * 3
    w = torch.randn(circuit.n_weights, generator=g) * 0.1
    backend = TorchBackend(shots=shots)
    with torch.no_grad():
        evaluate = best_of(lambda: backend(circuit, x, w), 5)

    def step():
        xx, ww = x[:4].clone().requires_grad_(), w.clone().requires_grad_()
        backend(circuit, xx, ww).sum().backward()

    exact = TorchBackend()
    with torch.no_grad():
        exact_eval = best_of(lambda: exact(circuit, x, w), 5)
    return {"shots": shots, "val_eval_153_s": evaluate, "exact_val_eval_153_s": exact_eval,
            "train_step_batch4_parameter_shift_s": best_of(step, 5)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qubits", type=int, nargs="+", default=[4, 6, 8, 10])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds of default.mixed per point before scaling")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "density": [logged(density_point(n, args.batch, args.budget)) for n in args.qubits],
        "shots": [shots_point(s) for s in (1024,)],
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
