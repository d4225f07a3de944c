"""`qtransfer.mixed`: PennyLane tapes with one-qubit channels run on the engine's density-matrix path."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pennylane as qml
import torch
from pennylane.devices.qubit_mixed import measure, measure_with_samples

from qtransfer.devices.native import NATIVE_NAMES, is_native
from qtransfer.devices.qubit import QTransferQubit
from qtransfer.devices.simulate import structured
from qtransfer.devices.translate import COMPILED_CACHE_SIZE, as_tensor, repeatable, translate
from qtransfer.errors import InputError
from qtransfer.quantum.fused import DensityFusedCircuit
from qtransfer.quantum.gate_matrices import complex_dtype

_compiled: OrderedDict[tuple, DensityFusedCircuit] = OrderedDict()


def is_channel(op: object) -> bool:
    """A one-qubit channel: the engine applies any of them by its Kraus matrices."""
    return isinstance(op, qml.operation.Channel) and len(op.wires) == 1


def is_native_mixed(op: object) -> bool:
    """Whether the density path runs `op` without decomposing it."""
    return is_native(op) or is_channel(op)


def superoperator(op: qml.operation.Channel) -> np.ndarray:
    """Σ K ⊗ conj(K) of a one-qubit channel, on the (row, column) bits of its qubit."""
    if any(qml.math.requires_grad(p) for p in op.data):
        raise InputError(f"{op.name}'s parameters are constants on qtransfer.mixed (not differentiated); "
                         "pass them without requires_grad, or use diff_method='finite-diff' for them")
    if any(qml.math.ndim(p) for p in op.data if op.name != "QubitChannel"):
        raise InputError(f"{op.name} is broadcast; qtransfer.mixed broadcasts gate parameters only")
    kraus = [np.asarray(qml.math.unwrap(qml.math.detach(k)), dtype=complex) for k in op.kraus_matrices()]
    out = np.zeros((4, 4), dtype=complex)
    for k in kraus:
        out = out + np.kron(k, k.conj())
    return out


def _split(tape: qml.tape.QuantumScript) -> tuple[qml.tape.QuantumScript, list[list[tuple[int, np.ndarray]]]]:
    """The tape's gates (a neutral RY(0) where a channel comes first on its wire), and per gate the channels
    after it."""
    ops: list = []
    channels: list[list[tuple[int, np.ndarray]]] = []
    for op in tape.operations:
        if not is_channel(op):
            ops.append(op)
            channels.append([])
            continue
        if not ops:
            ops.append(qml.RY(0.0, wires=op.wires))
            channels.append([])
        channels[-1].append((int(op.wires[0]), superoperator(op)))
    return tape.copy(operations=ops), channels


def _fused(circuit, channels, dtype: torch.dtype) -> DensityFusedCircuit:
    key = (circuit, dtype, tuple((q, m.tobytes()) for c in channels for q, m in c), tuple(len(c) for c in channels))
    hit = _compiled.get(key)
    if hit is not None:
        _compiled.move_to_end(key)
        return hit
    real = circuit.real and all(not np.abs(m.imag).any() for c in channels for _, m in c)
    run_dtype = dtype if real else complex_dtype(dtype)
    made = _compiled[key] = DensityFusedCircuit(circuit, run_dtype, torch.device("cpu"), channels)
    if len(_compiled) > COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return made


def _run(tape: qml.tape.QuantumScript, n_qubits: int, dtype: torch.dtype, observe: bool):
    gates, channels = _split(tape)
    t = translate(gates, n_qubits, dtype)
    rows = 1 if t.inputs is None else t.inputs.shape[0]
    sim = _fused(t.circuit, channels, dtype)
    return t, repeatable(lambda x, w: sim.run(x, w, rows, observe=observe), t.inputs, t.weights)


def diagonal_expvals(tape: qml.tape.QuantumScript, n_qubits: int, dtype: torch.dtype) -> list[torch.Tensor] | None:
    """Expectation values read from the diagonal of the final density matrix when every measurement is the
    expectation of a sum of Z products (the engine reads probabilities without building the matrix), else None."""
    if tape.shots or not tape.measurements:
        return None
    for mp in tape.measurements:
        rep = mp.obs.pauli_rep if isinstance(mp, qml.measurements.ExpectationMP) and mp.obs is not None else None
        if rep is None or any(set(word.values()) - {"Z"} for word in rep):
            return None
    t, probs = _run(tape, n_qubits, dtype, observe=True)  # (rows, 2^n)
    bits = (np.arange(2**n_qubits)[:, None] >> np.arange(n_qubits - 1, -1, -1)[None, :]) & 1
    out = []
    for mp in tape.measurements:
        total = torch.zeros(probs.shape[0], dtype=dtype)
        for word, coeff in mp.obs.pauli_rep.items():
            signs = np.prod(1 - 2 * bits[:, [int(w) for w in word]], axis=1) if word else np.ones(2**n_qubits)
            total = total + as_tensor(qml.math.real(coeff), dtype) * (probs @ torch.as_tensor(signs, dtype=probs.dtype))
        if t.batch_size is not None and total.shape[0] != t.batch_size:
            total = total.expand(t.batch_size)
        out.append(total if t.batch_size is not None else total[0])
    return out


def density_matrix(tape: qml.tape.QuantumScript, n_qubits: int, dtype: torch.dtype) -> torch.Tensor:
    """The final density matrix, complex, (2,) * 2n (rows, then columns), batch first when broadcast."""
    t, rho = _run(tape, n_qubits, dtype, observe=False)  # (4^n, rows)
    n = n_qubits
    rho = rho.T.reshape((-1,) + (2,) * (2 * n))  # bits (r0, c0, r1, c1, ...)
    rho = rho.permute([0] + [1 + 2 * q for q in range(n)] + [2 + 2 * q for q in range(n)]).to(complex_dtype(dtype))
    if t.batch_size is not None and rho.shape[0] != t.batch_size:
        rho = rho.expand(t.batch_size, *rho.shape[1:])
    return rho if t.batch_size is not None else rho[0]


class QTransferMixed(QTransferQubit):
    """qtransfer's density-matrix engine behind PennyLane's device API: one-qubit channels (depolarizing,
    amplitude and phase damping, bit and phase flips, QubitChannel, ...) after gates; same options as
    `qtransfer.qubit` (method is always the fused density path)."""

    name = "qtransfer.mixed"
    _backprop_second_order = False  # the density path differentiates once: higher orders by parameter shift
    _native = staticmethod(is_native_mixed)
    _target_gates = NATIVE_NAMES | {"DepolarizingChannel", "AmplitudeDamping", "PhaseDamping", "BitFlip", "PhaseFlip",
                                    "QubitChannel", "GeneralizedAmplitudeDamping", "ResetError", "PauliError",
                                    "ThermalRelaxationError"}

    def _simulate(self, tape, n: int, method: str, rng=None, torch_out: bool = False, params=None):
        if params is not None:
            tape = tape.bind_new_parameters(params, list(range(len(params))))
        fast = diagonal_expvals(tape, n, self._dtype)
        if fast is not None:
            return structured(tape, fast if torch_out else [f.detach().numpy() for f in fast])
        rho = density_matrix(tape, n, self._dtype)
        state = rho if torch_out else rho.detach().numpy()
        batched = state.ndim == 2 * n + 1
        if not tape.shots:
            results = [measure(mp, state, is_state_batched=batched) for mp in tape.measurements]
        else:
            results = measure_with_samples(tape.measurements, state, shots=tape.shots, is_state_batched=batched,
                                           rng=rng if rng is not None else np.random.default_rng())
        return structured(tape, results)
