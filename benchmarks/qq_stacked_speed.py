"""QQ's CV networks B stacked across seeds against one at a time: seconds per seed per training step.

    python benchmarks/qq_stacked_speed.py --data PRETRAINED_DIR [--steps 30] [--models 20] [--out FILE]

For each cubic phase convention and cutoff, times `--steps` training steps (batch 8, the paper's network A and three
layers of network B) of one network B alone, and of `--models` networks B stacked as one (a leading model axis in
the Fock simulation); prints seconds per seed per step and their ratio (measured within one run).
"""
from __future__ import annotations

import argparse
import time

import torch
from timing import emit, logged

from qtransfer.experiments.quantum_to_quantum import notebook_stream, train_seeds
from qtransfer.models.quantum_backbones import create_quantum_backbone


def per_seed_step(data_dir: str, cubic_phase: str, cutoff: int, models: int, steps: int) -> float:
    """Seconds per seed per training step (test set of one batch, so training dominates)."""
    a = create_quantum_backbone("cv-gaussianity", weights=data_dir, squeeze_in_layer=False, cubic_phase=cubic_phase)
    seeds = list(range(1, models + 1))
    data = [notebook_stream(s, steps, 1) for s in seeds]
    started = time.perf_counter()
    train_seeds(a, data, seeds, cutoff, cubic_phase)
    return (time.perf_counter() - started) / models / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the paper's circuit_A.npy")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = []
    for cubic_phase in ("truncated", "exact"):
        for cutoff in (15, 35):
            solo = per_seed_step(args.data, cubic_phase, cutoff, 1, args.steps)
            stacked = per_seed_step(args.data, cubic_phase, cutoff, args.models, args.steps)
            points.append(logged({"cubic_phase": cubic_phase, "cutoff": cutoff, "solo_s_per_step": solo,
                                  "stacked_s_per_seed_step": stacked, "models": args.models,
                                  "speedup": solo / stacked}))
    emit({"steps": args.steps, "threads": args.threads, "points": points}, args.out)


if __name__ == "__main__":
    main()
