"""An independent PennyLane rendering of a circuit description, the yardstick for the engine."""
from __future__ import annotations

import pennylane as qml
import torch
from torch import Tensor

from qtransfer import Circuit

QML_OPS = {"H": qml.Hadamard, "X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}
PAULI = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}


def reference_expvals(circuit: Circuit, inputs: Tensor | None, weights: Tensor) -> Tensor:
    """Expectation values (batch, n_outputs) from PennyLane default.qubit with backprop (broadcast inputs)."""
    dev = qml.device("default.qubit", wires=circuit.n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def run(x, w):
        for g in circuit.gates:
            params = [
                x[..., p.index] if p.source == "input"
                else w[p.index] if p.source == "weight"
                else torch.tensor(p.value, dtype=w.dtype)
                for p in g.params
            ]
            QML_OPS.get(g.name, getattr(qml, g.name))(*params, wires=list(g.wires))
        return [qml.expval(qml.prod(*[PAULI[p](w) for p, w in zip(o.paulis, o.wires)])) for o in circuit.observables]

    out = torch.stack(list(run(inputs, weights)), dim=-1)
    return out if out.dim() == 2 else out.unsqueeze(0)


QML_CHANNELS = {"depolarizing": qml.DepolarizingChannel, "amplitude_damping": qml.AmplitudeDamping,
                "phase_damping": qml.PhaseDamping, "bit_flip": qml.BitFlip, "phase_flip": qml.PhaseFlip}


def reference_noisy_expvals(circuit: Circuit, inputs: Tensor, weights: Tensor, noise, readout_prob=None) -> Tensor:
    """Expectation values (batch, n_outputs) from PennyLane default.mixed with the model's channels after gates."""
    # readout error as a bit flip on every wire before a Z measurement (default.mixed's own readout_prob
    # fails under differentiation in PennyLane 0.45)
    assert readout_prob is None or all(o.diagonal for o in circuit.observables)
    dev = qml.device("default.mixed", wires=circuit.n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def run(x, w):
        for g in circuit.gates:
            params = [
                x[p.index] if p.source == "input" else w[p.index] if p.source == "weight"
                else torch.tensor(p.value, dtype=w.dtype)
                for p in g.params
            ]
            QML_OPS.get(g.name, getattr(qml, g.name))(*params, wires=list(g.wires))
            for rule in noise.rules:
                if rule.p > 0 and rule.applies_to(g):
                    for wire in g.wires:
                        QML_CHANNELS[rule.channel](rule.p, wires=wire)
        for wire in range(circuit.n_qubits) if readout_prob else ():
            qml.BitFlip(readout_prob, wires=wire)
        return [qml.expval(qml.prod(*[PAULI[p](w) for p, w in zip(o.paulis, o.wires)])) for o in circuit.observables]

    return torch.stack([torch.stack(list(run(x, weights))) for x in inputs])
