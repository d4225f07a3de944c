"""The operations the engine runs as they are, by PennyLane name; PennyLane decomposes everything else into them."""
from __future__ import annotations

import pennylane as qml

# PennyLane name -> the engine's gate name (quantum/circuits.py)
ENGINE_GATES: dict[str, str] = {
    "Hadamard": "H",
    "PauliX": "X",
    "PauliY": "Y",
    "PauliZ": "Z",
    "S": "S",
    "T": "T",
    "RX": "RX",
    "RY": "RY",
    "RZ": "RZ",
    "PhaseShift": "PhaseShift",
    "Rot": "Rot",
    "CNOT": "CNOT",
    "CZ": "CZ",
    "SWAP": "SWAP",
    "CRX": "CRX",
    "CRY": "CRY",
    "CRZ": "CRZ",
    "IsingXX": "IsingXX",
    "IsingYY": "IsingYY",
    "IsingZZ": "IsingZZ",
}

# Operations that change no amplitude's modulus: a global phase is applied to the final state, the rest skipped.
GLOBAL_PHASE = "GlobalPhase"
SKIPPED = frozenset({"Identity", "Barrier", "Snapshot"})

# What PennyLane's decompose transform stops at (graph decomposition targets these names too).
NATIVE_NAMES = frozenset(ENGINE_GATES) | {GLOBAL_PHASE} | SKIPPED


def is_native(op: object) -> bool:
    """Whether the engine runs `op` without decomposing it."""
    return getattr(op, "name", None) in NATIVE_NAMES


def decomposition(op) -> list:
    """PennyLane's decomposition of `op`; one into a QubitUnitary (which decomposes further) when it has none
    but has a matrix."""
    if op.has_decomposition or not op.has_matrix or op.name == "QubitUnitary":
        return op.decomposition()
    return [qml.QubitUnitary(op.matrix(), wires=op.wires)]
