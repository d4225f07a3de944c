#!/usr/bin/env python
"""Time per training step of the Fock-basis CV simulator, at the paper's settings and against cutoff and modes.

    python benchmarks/cv_speed.py --threads 1 --out cv_speed.json

Paper's settings: QQ — one training step (forward, backward, Adam) of network B (3 trainable single-mode layers
R·S·R·D·R·V after the pretrained layer A) on a batch of 8 at cutoff 15; QC — network A (the two-mode tetromino
network cut after 15 layers) on one batch of the 7 input states at cutoff 11 (features only: network A is
frozen), and one step of the linear network B on them.

Scaling: one training step of a generic circuit of 2 layers on M modes (per mode R, S, D, Kerr; a beam splitter
between neighbouring modes), batch 8, loss from the vacuum probability, complex128, for cutoffs 5–20 and 1–3
modes. Each figure is the best of `--repeats` timed calls after one warm-up call.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from timing import best_of, emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def generic_step(modes: int, cutoff: int, batch: int = 8, layers: int = 2):
    from qtransfer.quantum.fock import FockState

    params = (0.1 * torch.randn(layers, modes, 8, dtype=torch.float64)).requires_grad_()
    optimizer = torch.optim.Adam([params], lr=0.01)
    shift = torch.linspace(0.1, 0.5, batch, dtype=torch.float64)

    def step() -> None:
        s = FockState.vacuum(modes, cutoff, batch=batch, dtype=torch.complex128).displace(shift, 0.0, 0)
        for layer in params:
            for m in range(modes):
                p = layer[m]
                s = s.rotate(p[0], m).squeeze(p[1], p[2], m).displace(p[3], p[4], m).kerr(p[5], m)
            for m in range(modes - 1):
                s = s.beamsplitter(layer[m, 6], layer[m, 7], (m, m + 1))
        loss = -torch.log(s.probabilities().flatten(1)[:, 0] + 1e-7).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def paper_points(weights: str | None, repeats: int) -> dict:
    from qtransfer.experiments.quantum_to_classical import (
        classical_network,
        noisy_coherent_states,
    )
    from qtransfer.experiments.quantum_to_quantum import (
        GaussianityClassifier,
        gaussianity_batches,
        vacuum_loss,
    )
    from qtransfer.models.quantum_backbones import create_quantum_backbone

    out = {}
    network_a = create_quantum_backbone("cv-gaussianity", weights=weights, squeeze_in_layer=False)
    model = GaussianityClassifier(network_a, layers=3, cutoff=15)
    optimizer = torch.optim.Adam(model.trainable.parameters(), lr=0.01)
    batch = gaussianity_batches(1, 8, seed=0)[0]

    def qq_step() -> None:
        loss = vacuum_loss(model(batch)[0], batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    out["qq_training_step_ms"] = 1e3 * best_of(qq_step, repeats)
    tetromino = create_quantum_backbone("cv-tetromino", depth=15, weights=weights)
    x, y = noisy_coherent_states(1, seed=0)
    out["qc_network_a_batch_of_7_ms"] = 1e3 * best_of(lambda: tetromino(x), repeats)
    features = tetromino(x)
    head = classical_network(16, 7)
    head_optimizer = torch.optim.Adam(head.parameters(), lr=0.01)

    def qc_step() -> None:
        loss = torch.nn.functional.cross_entropy(head(features), y)
        head_optimizer.zero_grad()
        loss.backward()
        head_optimizer.step()

    out["qc_network_b_training_step_ms"] = 1e3 * best_of(qc_step, repeats)
    x_many, _ = noisy_coherent_states(1000, seed=0)
    out["qc_network_a_7000_states_s"] = best_of(lambda: tetromino(x_many), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", default=None, help="folder with the paper's .npy files (else cached/fetched)")
    parser.add_argument("--cutoffs", type=int, nargs="+", default=[5, 8, 11, 15, 20])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "paper": paper_points(args.weights, args.repeats), "scaling": []}
    for modes in (1, 2, 3):
        for cutoff in args.cutoffs:
            ms = 1e3 * best_of(generic_step(modes, cutoff), args.repeats)
            result["scaling"].append({"modes": modes, "cutoff": cutoff, "state_size": cutoff**modes,
                                      "training_step_ms": round(ms, 2)})
            print(json.dumps(result["scaling"][-1]), file=sys.stderr)
    emit(result, args.out)


if __name__ == "__main__":
    main()
