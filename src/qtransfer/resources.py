"""Will a circuit fit: the state-vector memory a head needs against the memory the machine has free."""
from __future__ import annotations

import os

from .circuits import Circuit

BYTES_PER_AMPLITUDE = 8  # complex64, the engine's default precision
EVAL_BATCH = 256  # validation runs in chunks of this many samples, without gradients


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


def circuit_bytes(circuit: Circuit, batch_size: int, density: bool = False) -> int:
    """Peak state-vector memory of training: autograd keeps about one state per gate for the batch; the
    gradient-free validation pass holds a few states of up to EVAL_BATCH samples. Density matrices (noise)
    have 4^n entries instead of 2^n."""
    amplitudes = 2 ** (2 * circuit.n_qubits if density else circuit.n_qubits) * BYTES_PER_AMPLITUDE
    training = batch_size * amplitudes * (len(circuit.gates) + 2)
    evaluation = EVAL_BATCH * amplitudes * 3
    return max(training, evaluation)


def check_fits(
    circuit: Circuit, batch_size: int, device: str = "cpu", free: int | None = None, density: bool = False
) -> None:
    """Refuse a circuit whose state vectors cannot fit in free memory, saying how many qubits would."""
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
    raise ValueError(
        f"{circuit.n_qubits} qubits need about {need / 2**30:.1f} GiB of {'density matrices' if density else 'state vectors'} (training keeps "
        f"{len(circuit.gates) + 2} states of {batch_size} × {size} entries for the gradient; "
        f"validation holds 3 of {EVAL_BATCH} × {size}), but only {free / 2**30:.1f} GiB is free on "
        f"{device}; use at most {fits} qubits here, or a machine with more memory"
    )
