"""Running a tape on the engine: expectation values of Pauli sums straight from its observables, every other
measurement from its final state by PennyLane's measurement functions, and derivatives through its autograd node
(the adjoint sweep), for any interface."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pennylane as qml
import torch
from pennylane.devices.qubit import measure, measure_with_samples
from torch import Tensor

from qtransfer.devices.translate import (
    Translation,
    as_tensor,
    expvals,
    final_state,
    pauli_observables,
    translate,
    word_observable,
)


def simulate(tape: qml.tape.QuantumScript, n_qubits: int, dtype: torch.dtype, method: str,
             rng: np.random.Generator | None = None, torch_out: bool = False, params: list | None = None):
    """The tape's results (PennyLane's structure); torch tensors with autograd when `torch_out`, else numpy.
    The tape's wires must be 0..n_qubits-1; `params` replaces its operations' parameters."""
    return structured(tape, _measurements(tape, n_qubits, dtype, method, rng, torch_out, params))


def structured(tape: qml.tape.QuantumScript, results: Sequence):
    """One result per measurement in PennyLane's structure: a single one unwrapped, shot vectors outermost."""
    if len(tape.measurements) == 1:
        if tape.shots.has_partitioned_shots:
            return tuple(r[0] for r in results)
        return results[0]
    return tuple(results)


def _measurements(tape, n_qubits: int, dtype: torch.dtype, method: str, rng, torch_out: bool, params) -> Sequence:
    words = pauli_observables(tape) if not tape.shots else None
    if words is not None:
        t = translate(tape, n_qubits, dtype, words, params)
        values = expvals(t, dtype, method) if words else None
        out = [_pauli_sum(mp.obs.pauli_rep, words, values, t, dtype) for mp in tape.measurements]
        return out if torch_out else [o.detach().numpy() for o in out]
    t = translate(tape, n_qubits, dtype, params=params)
    torch_state = final_state(t, dtype, method)
    state = torch_state if torch_out else torch_state.detach().numpy()
    batched = t.batch_size is not None
    if not tape.shots:
        return [measure(mp, state, is_state_batched=batched) for mp in tape.measurements]
    return measure_with_samples(tape.measurements, state, shots=tape.shots, is_state_batched=batched,
                                rng=rng if rng is not None else np.random.default_rng())


def _pauli_sum(rep, words: list, values: Tensor | None, t: Translation, dtype: torch.dtype) -> Tensor:
    """Σ coefficient · ⟨word⟩, shape (batch,) when broadcast, else ()."""
    rows = 1 if t.batch_size is None else t.batch_size
    total = torch.zeros(rows, dtype=dtype)
    for word, coeff in rep.items():
        c = as_tensor(qml.math.real(coeff), dtype)
        if word:
            assert values is not None
            total = total + c * values[:, words.index(word_observable(word))]
        else:
            total = total + c
    return total[0] if t.batch_size is None else total


def _with_torch_params(tape, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
    """The tape's gate parameters as torch tensors, and its trainable ones (which require grad)."""
    # only gate parameters: an observable's (a Hermitian matrix, a projector's state) stay as they are
    params = [as_tensor(p, dtype).detach() for p in tape.get_parameters(trainable_only=False, operations_only=True)]
    trainable = []
    for i in tape.trainable_params:
        if i < len(params):
            params[i].requires_grad_(True)
            trainable.append(params[i])
    return params, trainable


def _results_list(results, n_measurements: int) -> list:
    return list(results) if n_measurements > 1 else [results]


@torch.enable_grad()  # called inside torch's own autograd functions, where it is off
def execute_and_vjp(tape, cotangents, run: Callable, dtype: torch.dtype, first=None):
    """(Σ cotangent · d(results)/d(trainable parameter) per trainable parameter, the results) from one run of
    the engine, `run(tape, params=...)` giving torch results for those parameters (or `first`, a `forward` kept
    from the execution): one forward and one reverse sweep."""
    first = first if first is not None else _fresh(tape, run, dtype)
    res, trainable = first
    numpy_results = _to_numpy(tuple(res) if len(res) > 1 else res[0])
    if not trainable:
        return (), numpy_results
    cots = [as_cotangent(c) for c in _results_list(cotangents, len(tape.measurements))]
    batched = any(c.dim() > r.dim() for r, c in zip(res, cots) if c is not None)
    if not batched:
        return Ragged(_product(tape, cots, run, dtype, first, real=True)), numpy_results
    # cotangents with a leading batch axis (a Jacobian asked for as VJPs): one product per row
    n = next(c.shape[0] for r, c in zip(res, cots) if c is not None and c.dim() > r.dim())
    rows = [_product(tape, [None if c is None else c[k] for c in cots], run, dtype, first if k == 0 else None, True)
            for k in range(n)]
    return tuple(np.stack([row[p] for row in rows], -1) for p in range(len(trainable))), numpy_results


@torch.enable_grad()
def forward(tape, run: Callable, dtype: torch.dtype) -> tuple[tuple[list[Tensor], list[Tensor]], object]:
    """A run kept for a vector-Jacobian product to come, and its results as numpy."""
    first = _fresh(tape, run, dtype)
    return first, _to_numpy(tuple(first[0]) if len(first[0]) > 1 else first[0][0])


def _fresh(tape, run: Callable, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
    """A run with torch parameters: its results (one per measurement) and trainable parameters."""
    params, trainable = _with_torch_params(tape, dtype)
    return _results_list(run(tape, params=params), len(tape.measurements)), trainable


def _product(tape, cots: list, run: Callable, dtype: torch.dtype, first=None,
             real: bool = False) -> tuple[np.ndarray, ...]:
    """Σ cotangent · d(results)/d(trainable parameter), complex when results are (a second run for the imaginary
    part) unless `real` (a real parameter's product: the real part, the chain rule for a real loss in torch and
    autograd), from `first` (a `_fresh` run, used once) or fresh runs: the engine's nodes are differentiated once."""
    res, trainable = first if first is not None else _fresh(tape, run, dtype)
    out = _grads(res, cots, trainable)
    if not real and any(r.is_complex() for r, c in zip(res, cots) if c is not None):
        res, trainable = _fresh(tape, run, dtype)
        imag = _grads(res, [None if c is None else -1j * c for c in cots], trainable)  # Im z = Re(-i z)
        out = tuple(a + 1j * b for a, b in zip(out, imag))
    return out


class Ragged(tuple):
    """Per-parameter products whose shapes differ (broadcast parameters have one value per sample).

    PennyLane's torch interface probes a tape's products with np.squeeze, which cannot stack ragged shapes but
    calls a squeeze method when there is one; this one says how many there are."""

    def squeeze(self) -> np.ndarray:
        """A placeholder of the right length (np.squeeze's probe)."""
        return np.empty(len(self))


def as_cotangent(c) -> Tensor | None:
    """A cotangent as a torch tensor, or None when it is zero."""
    if c is None:
        return None
    t = torch.as_tensor(np.asarray(qml.math.unwrap(c)))
    return t


def _grads(res: list, cots: list, trainable: list[Tensor]) -> tuple[np.ndarray, ...]:
    """d Re(Σ cotangent · result) / d(trainable parameter)."""
    loss = None
    for r, c in zip(res, cots):
        if c is None or not r.requires_grad:
            continue
        term = (r * c.to(torch.promote_types(r.dtype, c.dtype))).sum()
        term = term.real if term.is_complex() else term
        loss = term if loss is None else loss + term
    if loss is None:
        return tuple(np.zeros(tuple(p.shape)) for p in trainable)
    grads = torch.autograd.grad(loss, trainable, allow_unused=True)
    return tuple(np.zeros(tuple(p.shape)) if g is None else g.detach().numpy() for g, p in zip(grads, trainable))


def _to_numpy(results):
    if isinstance(results, tuple):
        return tuple(_to_numpy(r) for r in results)
    return results.detach().numpy() if isinstance(results, Tensor) else results


@torch.enable_grad()  # called inside torch's own autograd functions, where it is off
def jacobian(tape, run: Callable, dtype: torch.dtype):
    """The Jacobian in PennyLane's structure (measurements, then trainable parameters; single ones unwrapped),
    one reverse sweep per entry of the results, `run(tape, params=...)` giving torch results for them."""
    first = _fresh(tape, run, dtype)
    res, trainable = first
    numpy_results = _to_numpy(tuple(res) if len(res) > 1 else res[0])
    if not trainable:
        return (), numpy_results
    per_measurement = []
    for k, r in enumerate(res):
        entries = []
        for e in range(max(1, r.numel())):
            cot = torch.zeros(r.shape, dtype=r.dtype).reshape(-1)
            cot[e] = 1
            cots: list = [None] * len(res)
            cots[k] = cot.reshape(r.shape)
            entries.append(_product(tape, cots, run, dtype, first if k == e == 0 else None))
        per_param = tuple(
            np.stack([row[p] for row in entries]).reshape(tuple(r.shape) + tuple(trainable[p].shape))
            for p in range(len(trainable))
        )
        per_measurement.append(per_param[0] if len(per_param) == 1 else per_param)
    jac = per_measurement[0] if len(per_measurement) == 1 else tuple(per_measurement)
    return jac, numpy_results
