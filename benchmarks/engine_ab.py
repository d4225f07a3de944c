#!/usr/bin/env python
"""The engine's forward + backward step in two source trees, timed in alternating subprocesses in one run.

For a refactor that must not change speed: each (case, tree) runs in a fresh process with that tree first on
PYTHONPATH and one thread, takes the best of 5 CPU-time repeats, and the trees alternate order every round.
Prints JSON: per case each tree's median ms per step and the median of the per-round ratios B/A.

    python benchmarks/engine_ab.py OLD/src NEW/src --rounds 5 --cases 4 8 12 16 stack
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, sys, time, torch
torch.set_num_threads(1)
from qtransfer import CompiledCircuit, make_circuit
case = sys.argv[1]
torch.manual_seed(0)
if case == "stack":
    c = make_circuit("tutorial", 4, 6); eng = CompiledCircuit(c, dtype=torch.float32)
    x, w = torch.rand(20, 32, 4), 0.1 * torch.randn(20, c.n_weights)
else:
    n = int(case); c = make_circuit("tutorial", n, 6); eng = CompiledCircuit(c, dtype=torch.float32)
    x, w = torch.rand(32, n), 0.1 * torch.randn(c.n_weights)
def step():
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    eng(xi, wi).sum().backward()
reps = {"4": 200, "8": 100, "12": 20, "16": 4, "stack": 100}[case]
for _ in range(max(2, reps // 10)): step()
ts = []
for _ in range(5):
    t = time.process_time()
    for _ in range(reps): step()
    ts.append((time.process_time() - t) / reps)
print(json.dumps(min(ts)))
'''
CASES = ("4", "8", "12", "16", "stack")  # qubits of the depth-6 tutorial circuit at batch 32; stack: K=20 at 4 qubits


def main() -> None:
    """Time every case in both trees and print the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="source folder A (the one holding qtransfer/)")
    p.add_argument("b", help="source folder B")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    args = p.parse_args()
    trees = {"a": args.a, "b": args.b}
    times: dict[str, dict[str, list[float]]] = {c: {"a": [], "b": []} for c in args.cases}
    for r in range(args.rounds):
        for case in args.cases:
            for tree in ("a", "b") if r % 2 == 0 else ("b", "a"):
                env = dict(os.environ, PYTHONPATH=trees[tree], OMP_NUM_THREADS="1")
                out = subprocess.run([sys.executable, "-c", CHILD, case], env=env, capture_output=True, text=True,
                                     check=True)
                times[case][tree].append(json.loads(out.stdout))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    summary = {case: {"a_ms": round(1e3 * statistics.median(t["a"]), 4),
                      "b_ms": round(1e3 * statistics.median(t["b"]), 4),
                      "ratio_b_over_a": round(statistics.median(b / a for a, b in zip(t["a"], t["b"])), 3)}
               for case, t in times.items()}
    print(json.dumps({"a": args.a, "b": args.b, "rounds": args.rounds, "loadavg_end": os.getloadavg(),
                      "cases": summary}, indent=1))


if __name__ == "__main__":
    main()
