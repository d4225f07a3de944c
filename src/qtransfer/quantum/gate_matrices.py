"""Gate matrices as torch tensors, the run dtype of a circuit, and gates embedded in wider registers.

Wire 0 is the most significant bit of a basis-state index, as in PennyLane.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import GATES, Circuit

# --------------------------------------------------------------------------- gate matrices

_S2 = 1 / math.sqrt(2)
FIXED: dict[str, np.ndarray] = {
    "H": np.array([[_S2, _S2], [_S2, -_S2]]),
    "X": np.array([[0, 1], [1, 0]]),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.array([[1, 0], [0, -1]]),
    "S": np.array([[1, 0], [0, 1j]]),
    "T": np.array([[1, 0], [0, np.exp(1j * np.pi / 4)]]),
    "CNOT": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]),
    "CZ": np.diag([1, 1, 1, -1]),
    "SWAP": np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
}


def _rotation_basis() -> dict[str, tuple[float, np.ndarray]]:
    """One-parameter gates as M(t) = C + cos(f t) A + sin(f t) B: name -> (f, stack [C, A, B])."""
    I2, I4 = np.eye(2), np.eye(4)
    P = {k: FIXED[k] for k in "XYZ"}
    p0, p1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    out: dict[str, tuple[float, np.ndarray]] = {}
    for k in "XYZ":
        out[f"R{k}"] = (0.5, np.stack([0 * I2, I2, -1j * P[k]]))
        out[f"CR{k}"] = (0.5, np.stack([np.kron(p0, I2), np.kron(p1, I2), np.kron(p1, -1j * P[k])]))
        out[f"Ising{k}{k}"] = (0.5, np.stack([0 * I4, I4, -1j * np.kron(P[k], P[k])]))
    out["PhaseShift"] = (1.0, np.stack([p0, p1, 1j * p1]))
    return out


ROTATIONS = _rotation_basis()
_basis_cache: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}


def _basis(name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (name, dtype, device)
    if key not in _basis_cache:
        b = ROTATIONS[name][1]
        b = b if dtype.is_complex else b.real
        _basis_cache[key] = torch.as_tensor(b.reshape(3, -1), dtype=dtype, device=device)
    return _basis_cache[key]


def _rotation(name: str, theta: Tensor, dtype: torch.dtype) -> Tensor:
    f, b = ROTATIONS[name][0], _basis(name, dtype, theta.device)
    t = theta * f
    trig = torch.stack([torch.ones_like(t), torch.cos(t), torch.sin(t)], -1).to(dtype)
    d = math.isqrt(b.shape[1])
    return torch.unflatten(trig @ b, -1, (d, d))


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype with the precision of real `dtype`."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype with the precision of `dtype`."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def gate_matrix(
    name: str,
    params: Tensor | None = None,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Matrix of gate `name`; `params` has shape (..., n_params) and gives matrices (..., d, d)."""
    if name in FIXED:
        m = FIXED[name]
        if not dtype.is_complex and np.iscomplexobj(m):
            raise InputError(f"gate {name} is complex; it cannot run in real dtype {dtype}")
        out = torch.as_tensor(m if dtype.is_complex else m.real, dtype=dtype, device=device)
        if params is not None and params.shape[:-1]:
            out = out.expand(*params.shape[:-1], *out.shape)
        return out
    if name not in GATES:
        raise InputError(f"unknown gate {name!r}; known: {', '.join(GATES)}")
    if params is None or params.shape[-1] != GATES[name].n_params:
        raise InputError(f"gate {name} needs params of shape (..., {GATES[name].n_params})")
    if not dtype.is_complex and not GATES[name].real:
        raise InputError(f"gate {name} is complex; it cannot run in real dtype {dtype}")
    params = params.to(real_dtype(dtype))
    if name == "Rot":
        # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
        rz = _rotation("RZ", params[..., 0::2], dtype)
        return rz[..., 1, :, :] @ _rotation("RY", params[..., 1], dtype) @ rz[..., 0, :, :]
    return _rotation(name, params[..., 0], dtype)



def z_signs(n_wires: int) -> np.ndarray:
    idx = np.arange(2**n_wires)
    bits = (idx[:, None] >> np.arange(n_wires - 1, -1, -1)[None, :]) & 1
    signs: np.ndarray = np.prod(1 - 2 * bits, axis=1).astype(float)
    return signs

def run_dtype(circuit: Circuit, dtype: torch.dtype) -> torch.dtype:
    """The arithmetic dtype for `circuit` at precision `dtype`: real when the circuit is real."""
    dtype = real_dtype(dtype)
    return dtype if circuit.real else complex_dtype(dtype)

def bit_index(n: int, wires: Sequence[int]) -> np.ndarray:
    """For every basis state, the index of its bits on `wires` (first wire most significant)."""
    idx = np.arange(2**n)
    out = np.zeros_like(idx)
    for w in wires:
        out = out * 2 + ((idx >> (n - 1 - w)) & 1)
    return out


def pick(n: int, wires: Sequence[int], d: int) -> np.ndarray:
    """For every entry (r, c) of a full matrix, flat, the entry of a gate on `wires` it picks."""
    bits = bit_index(n, wires)
    flat: np.ndarray = (bits[:, None] * d + bits[None, :]).reshape(-1)
    return flat


def idle(n: int, wires: Sequence[int]) -> np.ndarray:
    """Flat full-matrix mask: 1 where row and column agree on every wire not in `wires`."""
    idle = bit_index(n, [w for w in range(n) if w not in wires])
    mask: np.ndarray = (idle[:, None] == idle[None, :]).reshape(-1).astype(float)
    return mask


def embed(n: int, wires: Sequence[int], m: np.ndarray) -> np.ndarray:
    """The flat full matrix of `m` acting on `wires` (identity elsewhere)."""
    full: np.ndarray = m.reshape(-1)[pick(n, wires, m.shape[0])] * idle(n, wires)
    return full
