"""Random circuits over every gate the engine knows, for agreement tests."""
from __future__ import annotations

import random

from qtransfer import Circuit, Gate, Observable, const, inp, weight
from qtransfer.quantum.circuits import GATES


def random_circuit(rng: random.Random, n_qubits: int) -> Circuit:
    """Random gates from the full set, each parameter an input, a weight or a constant."""
    n_inputs, n_weights = n_qubits, 2 * n_qubits
    names = [g for g in GATES if GATES[g].n_wires <= n_qubits]
    gates = []
    for _ in range(rng.randint(3, 5 * n_qubits)):
        name = rng.choice(names)
        spec = GATES[name]
        wires = tuple(rng.sample(range(n_qubits), spec.n_wires))
        params = []
        for _ in range(spec.n_params):
            source = rng.choice(["input", "weight", "const"])
            params.append(
                inp(rng.randrange(n_inputs)) if source == "input"
                else weight(rng.randrange(n_weights)) if source == "weight"
                else const(rng.uniform(-3, 3))
            )
        gates.append(Gate(name, wires, tuple(params)))
    obs = [Observable(rng.choice("XYZ"), (rng.randrange(n_qubits),)) for _ in range(3)]
    if n_qubits > 1:
        obs.append(Observable("ZZ", tuple(rng.sample(range(n_qubits), 2))))
    return Circuit(n_qubits, n_inputs, (n_weights,), tuple(gates), tuple(obs))
