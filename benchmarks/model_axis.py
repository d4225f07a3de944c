#!/usr/bin/env python
"""Engine forward + backward per model-step: K models stacked in one call against a loop of K solo calls.

    OMP_NUM_THREADS=1 python benchmarks/model_axis.py --out model_axis.json

Small: the tutorial template (4 qubits, depth 6) on a batch of 4, float32, dense path, at K = 1, 5, 20, 100.
Large: the same template at 12 and 16 qubits on the fused path, K = 1 and 4. A step is one engine call with
inputs (K, 4, n) and weights (K, n_weights), then backward of sum(coef * outputs) to both; the loop does the same
with K solo calls (inputs (4, n), weights (n_weights,)), each with its own backward. Figures are microseconds per
model-step (wall clock, and this process's CPU time, which load inflates less), the best of --repeats rounds of a
few steps each; every round times stacked and loop back to back, so their ratio holds under load (the load
average is printed beside them).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from timing import emit, logged

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BATCH, DEPTH = 4, 6
SMALL = [(4, k) for k in (1, 5, 20, 100)]
LARGE = [(12, 1), (12, 4), (16, 1), (16, 4)]


def steps(n_qubits: int, models: int, stacked: bool):
    """A closure running one forward + backward of K models, stacked or as a loop of solo calls."""
    from qtransfer import CompiledCircuit, make_circuit

    circuit = make_circuit("tutorial", n_qubits, DEPTH)
    engine = CompiledCircuit(circuit, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(models, BATCH, n_qubits, generator=g) * 3).requires_grad_()
    w = (0.01 * torch.randn(models, circuit.n_weights, generator=g)).requires_grad_()
    coef = torch.randn(models, BATCH, n_qubits, generator=g)
    xs = [x[k].detach().clone().requires_grad_() for k in range(models)]
    ws = [w[k].detach().clone().requires_grad_() for k in range(models)]

    def run_stacked() -> None:
        (engine(x, w) * coef).sum().backward()

    def run_loop() -> None:
        for k in range(models):
            (engine(xs[k], ws[k]) * coef[k]).sum().backward()

    return engine.method, run_stacked if stacked else run_loop


def point(n_qubits: int, models: int, repeats: int) -> dict:
    """Microseconds per model-step, stacked and looped, and their ratio: wall time and this process's CPU time,
    the best of `repeats` rounds, each round timing both kinds back to back (so load hits them alike)."""
    inner = max(1, 200 // models) if n_qubits <= 6 else 2
    out: dict = {"n_qubits": n_qubits, "models": models, "batch": BATCH, "depth": DEPTH}
    fns = {}
    for kind in ("stacked", "loop"):
        out["method"], fns[kind] = steps(n_qubits, models, kind == "stacked")
        fns[kind]()  # warm-up: compilation, buffers
    best = {(kind, clock): float("inf") for kind in fns for clock in ("wall", "cpu")}
    for _ in range(repeats):
        for kind, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fn()
            best[kind, "wall"] = min(best[kind, "wall"], time.perf_counter() - wall)
            best[kind, "cpu"] = min(best[kind, "cpu"], time.process_time() - cpu)
    for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
        for kind in fns:
            out[f"{kind}_us_per_model_step{suffix}"] = best[kind, clock] / inner / models * 1e6
        loop_us, stacked_us = out[f"loop_us_per_model_step{suffix}"], out[f"stacked_us_per_model_step{suffix}"]
        out[f"loop/stacked{suffix}"] = loop_us / stacked_us
    out["loadavg"] = os.getloadavg()[0]
    return logged(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip-large", action="store_true", help="only the 4-qubit points")
    p.add_argument("--out", help="also write the JSON to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = SMALL + ([] if args.skip_large else LARGE)
    points = [point(n, k, args.repeats) for n, k in cases]
    emit({"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                      "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
                      "loadavg_at_end": os.getloadavg()},
          "target": "stacked_us_per_model_step at 4 qubits, K = 20: <= 100",
          "points": points}, args.out)


if __name__ == "__main__":
    main()
