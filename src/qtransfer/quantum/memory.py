"""Will a circuit fit: the state memory a head needs against the memory the machine has free."""
from __future__ import annotations

import math
import os

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit

DENSE_MAX_QUBITS = 6  # the engine's dense path (full 2^n x 2^n matrices) up to here, the fused path above
# fused path with gradients: two pooled pairs of states, plus the measurement's and a block's temporaries
TRAIN_STATES = 6
EVAL_STATES = 4  # fused path without gradients: two pooled pairs
EVAL_AMPLITUDES = 2**24  # gradient-free runs go in chunks of at most this many amplitudes per state (fused.py)
EVAL_BATCH = 256  # validation hands the head this many samples at a time
WORKSPACE = 64 * 2**20  # the small matrices, index tensors and libraries' scratch beside the states


def amplitude_bytes(circuit: Circuit) -> int:
    """Bytes per amplitude at the default precision: float32 for real circuits, complex64 otherwise."""
    return 4 if circuit.real else 8


def circuit_bytes(circuit: Circuit, batch_size: int, density: bool = False) -> int:
    """Upper bound of the state memory of one training step and of a validation chunk, in bytes.

    Beside a fixed WORKSPACE, statevectors (the fused path) hold TRAIN_STATES states of the batch whatever the depth,
    since the gradient comes from an adjoint sweep. Density matrices (noise) have 4^n entries and keep about
    2 sqrt(operations) of them for their checkpointed backward. The dense path below DENSE_MAX_QUBITS
    keeps a few full matrices per moment.
    """
    n = circuit.n_qubits
    size = 4**n if density else 2**n
    per_state = size * (8 if density else amplitude_bytes(circuit))
    if density:
        kept = 2 * math.isqrt(len(circuit.gates)) + 2 + TRAIN_STATES
        training = batch_size * per_state * kept
        evaluation = min(EVAL_BATCH, batch_size * 4) * per_state * EVAL_STATES
        return int(WORKSPACE + max(training, evaluation))
    if n <= DENSE_MAX_QUBITS:
        matrices = 4 * len(circuit.gates) * size * per_state
        return int(WORKSPACE + matrices + (batch_size + EVAL_BATCH) * per_state * (len(circuit.gates) + 2))
    training = batch_size * per_state * TRAIN_STATES
    evaluation = max(1, min(EVAL_BATCH, EVAL_AMPLITUDES // size)) * per_state * EVAL_STATES
    return int(WORKSPACE + max(training, evaluation))


def available_bytes(device: str = "cpu") -> int | None:
    """Free memory on the device in bytes (MemAvailable on Linux, free GPU memory on CUDA), or None if unknown."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(
    circuit: Circuit, batch_size: int, device: str = "cpu", free: int | None = None, density: bool = False
) -> None:
    """Refuse a circuit whose states cannot fit in free memory, saying how many qubits would."""
    free = available_bytes(device) if free is None else free
    if free is None:
        return
    need = circuit_bytes(circuit, batch_size, density)
    if need <= free:
        return
    size = f"{4 if density else 2}^{circuit.n_qubits}"
    fits = circuit.n_qubits
    while fits > 1 and need / 2 ** ((2 if density else 1) * (circuit.n_qubits - fits)) > free:
        fits -= 1
    what = "density matrices" if density else "state vectors"
    raise InputError(
        f"{circuit.n_qubits} qubits need about {need / 2**30:.1f} GiB of {what} (a training step at batch "
        f"{batch_size} holds a few states of {size} entries per sample), but only {free / 2**30:.1f} GiB is free "
        f"on {device}; use at most {fits} qubits here, a smaller --batch-size, or a machine with more memory"
    )
