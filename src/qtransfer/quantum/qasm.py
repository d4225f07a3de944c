"""A circuit with its trained weights bound, as OpenQASM 3 written by Qiskit: the per-sample input angles stay
named parameters (`input float[64] x0;` ...), so one file serves every sample."""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from qtransfer.errors import MissingPackageError
from qtransfer.quantum.circuits import Circuit

# Qiskit's method for each gate of circuits.py (Rot is split into RZ, RY, RZ, as PennyLane defines it).
QISKIT_GATES = {
    "H": "h", "X": "x", "Y": "y", "Z": "z", "S": "s", "T": "t", "RX": "rx", "RY": "ry", "RZ": "rz",
    "PhaseShift": "p", "CNOT": "cx", "CZ": "cz", "SWAP": "swap", "CRX": "crx", "CRY": "cry", "CRZ": "crz",
    "IsingXX": "rxx", "IsingYY": "ryy", "IsingZZ": "rzz",
}


def input_name(index: int) -> str:
    """The OpenQASM name of input angle `index`."""
    return f"x{index}"


def qiskit_circuit(circuit: Circuit, weights: np.ndarray) -> Any:
    """A qiskit QuantumCircuit of `circuit` with `weights` bound and inputs as Parameters x0, x1, ...; wire i is
    qubit i. Measurements are not part of it: the observables are listed beside it."""
    if importlib.util.find_spec("qiskit") is None:
        raise MissingPackageError("writing OpenQASM needs Qiskit: pip install 'qtransfer[qiskit]'")
    from qiskit.circuit import Parameter, QuantumCircuit

    w = np.asarray(weights, dtype=float).reshape(-1)
    inputs = [Parameter(input_name(i)) for i in range(circuit.n_inputs)]
    qc = QuantumCircuit(circuit.n_qubits, name=circuit.name)

    def value(p: Any) -> Any:
        if p.source == "input":
            return inputs[p.index]
        return float(w[p.index]) if p.source == "weight" else float(p.value)

    for g in circuit.gates:
        params = [value(p) for p in g.params]
        if g.name == "Rot":  # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
            qc.rz(params[0], g.wires[0])
            qc.ry(params[1], g.wires[0])
            qc.rz(params[2], g.wires[0])
        else:
            getattr(qc, QISKIT_GATES[g.name])(*params, *g.wires)
    return qc


def to_openqasm3(circuit: Circuit, weights: np.ndarray) -> str:
    """OpenQASM 3 text of the circuit with `weights` bound and `input float[64] x<i>` for its input angles."""
    from qiskit import qasm3

    text: str = qasm3.dumps(qiskit_circuit(circuit, weights))
    return text
