"""Reference numbers for QQ from Strawberry Fields itself, in its own environment (never a qtransfer dependency).

Run with Strawberry Fields 0.23 (numpy 1.26, scipy 1.11) in a separate venv:

    python3 -m venv /work/venv-sf && /work/venv-sf/bin/pip install strawberryfields==0.23 "numpy==1.26.*" \
        "scipy==1.11.*"
    /work/venv-sf/bin/python benchmarks/qq_strawberryfields_reference.py PRETRAINED_DIR \
        tests/data/qq_strawberryfields.json

PRETRAINED_DIR holds the paper's circuit_A.npy. It writes, with the versions, command and date:
- `cubic_phase`: Strawberry Fields' V(γ) (fock backend's `cubicPhase`, exp of the truncated x̂³) at cutoffs 15 and 25;
- `forward`: the q2q notebook's circuit (its state preparation, circuit A without its squeezing gate, three layers
  of network B at fixed weights) run in Strawberry Fields' fock backend on the notebook's first batch of
  `RandomState(1)`: the vacuum probability p₀ and the norm of every state, at cutoffs 15 and 25.
"""
from __future__ import annotations

import datetime
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np
import scipy
import strawberryfields as sf
from strawberryfields.backends.fockbackend import ops as fock_ops
from strawberryfields.ops import Dgate, Ket, Rgate, Sgate, Vgate

CLIP = 1.0
GAMMAS = (-0.7, 0.3, 1.0)
CUTOFFS = (15, 25)
B_WEIGHTS_SEED, B_WEIGHTS_SD = 7, 0.3  # network B's fixed weights: RandomState(7).normal(0, 0.3, (6, 3))


def notebook_batch(seed: int = 1, batch: int = 8) -> dict[str, np.ndarray]:
    """The q2q notebook's first batch: labels, then sq, r1, r2, r3 (r3 unused), through float32 as it feeds them."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(2, size=batch)
    sq, r1, r2, _ = (rng.uniform(-w, w, size=(batch, 1))[:, 0].astype(np.float32).astype(np.float64)
                     for w in (0.5, 2 * math.pi, 2 * math.pi, 2 * math.pi))
    return {"labels": labels, "sq": sq, "r1": r1, "r2": r2}


def circuit_p0(label: int, sq: float, r1: float, r2: float, a: np.ndarray, b: np.ndarray, cutoff: int
               ) -> tuple[float, float]:
    """p₀ and the norm of one state through the notebook's circuit, in Strawberry Fields' fock backend."""
    clip = lambda v: float(np.clip(v, -CLIP, CLIP))  # noqa: E731
    ket = np.zeros(cutoff, dtype=np.complex128)
    ket[label] = 1
    prog = sf.Program(1)
    with prog.context as q:
        Ket(ket) | q[0]
        Dgate(1.0 - label, 0) | q[0]
        Rgate(r1) | q[0]
        Sgate(sq, 0) | q[0]
        Rgate(r2) | q[0]
        for _s, d, p1, p2, p3, v in a.T:  # circuit A: the notebook builds its Sgate without applying it
            Rgate(p1) | q[0]
            Rgate(p2) | q[0]
            Dgate(clip(d), 0) | q[0]
            Rgate(p3) | q[0]
            Vgate(clip(v)) | q[0]
        for s, d, p1, p2, p3, v in b.T:
            Rgate(p1) | q[0]
            Sgate(clip(s), 0) | q[0]
            Rgate(p2) | q[0]
            Dgate(clip(d), 0) | q[0]
            Rgate(p3) | q[0]
            Vgate(clip(v)) | q[0]
    state = sf.Engine("fock", backend_options={"cutoff_dim": cutoff}).run(prog).state
    return float(state.fock_prob([0])), float(np.real(state.trace()))


def main(pretrained: Path, out: Path) -> None:
    a = np.load(pretrained / "circuit_A.npy")
    b = np.random.RandomState(B_WEIGHTS_SEED).normal(0, B_WEIGHTS_SD, size=(6, 3))
    batch = notebook_batch()
    forward = {}
    for cutoff in CUTOFFS:
        rows = [circuit_p0(int(batch["labels"][i]), batch["sq"][i], batch["r1"][i], batch["r2"][i], a, b, cutoff)
                for i in range(len(batch["labels"]))]
        forward[str(cutoff)] = {"p0": [r[0] for r in rows], "norm": [r[1] for r in rows]}
    cubic = {str(c): {str(g): {"real": np.real(m).tolist(), "imag": np.imag(m).tolist()}
                      for g in GAMMAS for m in [fock_ops.cubicPhase(g, 2.0, c)]} for c in CUTOFFS}
    result = {
        "provenance": {
            "script": "benchmarks/qq_strawberryfields_reference.py",
            "command": " ".join(["python", *sys.argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "strawberryfields": sf.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(),
            "backend": "fock (numpy); V from strawberryfields.backends.fockbackend.ops.cubicPhase",
        },
        "network_b_weights": b.tolist(),
        "network_b_weights_rule": f"numpy.random.RandomState({B_WEIGHTS_SEED}).normal(0, {B_WEIGHTS_SD}, (6, 3))",
        "batch": {k: v.tolist() for k, v in batch.items()},
        "forward": forward,
        "cubic_phase": cubic,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"written": str(out), "forward": forward}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
