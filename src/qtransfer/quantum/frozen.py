"""A circuit with its weights fixed, as plain tensor ops (matmul, cos, sin, reshape, permute) that torch.jit.trace
and torch.onnx.export record: no custom autograd, no index tricks, no complex dtype (real and imaginary parts are
kept apart, and a real circuit has no imaginary part at all).

The gates before anything entangles a wire act on that wire alone: each wire's 2-vector is built per sample and
the state is their Kronecker product. The rest runs on the batched state: stretches without inputs as one constant
2^n x 2^n matrix each (up to FOLD_MAX_QUBITS qubits; gate by gate above), input gates one by one on their wires.
Diagonal observables are a constant sign matrix on the probabilities."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer.errors import InputError
from qtransfer.quantum.circuits import Circuit, Observable
from qtransfer.quantum.gate_matrices import FIXED, ROTATIONS, bit_index, embed, gate_matrix, z_signs

FOLD_MAX_QUBITS = 8  # constant stretches become one 2^n x 2^n matrix up to here (256 x 256: 0.5 MB in float32)

Pair = tuple[Tensor, "Tensor | None"]  # (real part, imaginary part or None when it is zero)
Names = tuple[str, "str | None"]  # the buffers of a constant's real and imaginary parts


class InputGate(NamedTuple):
    """A gate whose angle is input `column` (times f): M = C + cos(f t) A + sin(f t) B, on `wires`."""

    column: int
    f: float
    c: Names
    a: Names
    b: Names
    wires: tuple[int, ...]


class Constant(NamedTuple):
    """A constant: a wire's starting "vector", a wire's 2 x 2 "matrix", a "full" 2^n x 2^n matrix (transposed), or
    a "fixed" gate's transposed matrix on `wires`."""

    kind: str
    names: Names
    wires: tuple[int, ...] = ()


Step = InputGate | Constant


@dataclass(frozen=True)
class Op:
    """One gate with at most one parameter: fixed matrix `matrix`, or a rotation of input `index`."""

    name: str
    wires: tuple[int, ...]
    index: int = -1  # input feature feeding the gate's angle; -1: the matrix is fixed
    matrix: np.ndarray | None = None  # complex128 (d, d), when fixed


def resolve(circuit: Circuit, weights: np.ndarray) -> list[Op]:
    """The circuit's gates with weights and constants bound; Rot split into RZ, RY, RZ so every gate has at most
    one parameter."""
    ops: list[Op] = []
    for g in circuit.gates:
        parts = ([("RZ", g.params[0]), ("RY", g.params[1]), ("RZ", g.params[2])] if g.name == "Rot"
                 else [(g.name, g.params[0] if g.params else None)])
        for name, p in parts:
            if p is not None and p.source == "input":
                ops.append(Op(name, g.wires, index=p.index))
                continue
            if p is None:
                matrix = np.asarray(FIXED[name], dtype=complex)
            else:
                value = float(weights[p.index]) if p.source == "weight" else p.value
                matrix = gate_matrix(name, torch.tensor([value], dtype=torch.float64), torch.complex128).numpy()
            ops.append(Op(name, g.wires, matrix=matrix))
    return ops


def _split_prefix(ops: list[Op], n: int) -> tuple[list[list[Op]], list[Op]]:
    """Each wire's one-wire gates before any multi-wire gate touches it, and the rest in order."""
    wires: list[list[Op]] = [[] for _ in range(n)]
    rest: list[Op] = []
    entangled: set[int] = set()
    for op in ops:
        if len(op.wires) == 1 and op.wires[0] not in entangled:
            wires[op.wires[0]].append(op)
        else:
            rest.append(op)
            if len(op.wires) > 1:
                entangled.update(op.wires)
    return wires, rest


def _product(matrices: list[np.ndarray]) -> np.ndarray:
    """M_k ... M_1 for matrices applied in the order given (the identity for none)."""
    out = np.eye(2, dtype=complex)
    for m in matrices:
        out = m @ out
    return out


def _is_real(m: np.ndarray) -> bool:
    return not np.any(m.imag)


class FrozenCircuit(nn.Module):
    """inputs (B, n_inputs) -> expectation values (B, n_outputs) of `circuit` with `weights` bound, in `dtype`."""

    def __init__(self, circuit: Circuit, weights: Tensor | np.ndarray, dtype: torch.dtype = torch.float32,
                 fold_max_qubits: int = FOLD_MAX_QUBITS):
        super().__init__()
        w = np.asarray(weights.detach().cpu().double() if isinstance(weights, Tensor) else weights, dtype=float)
        if w.reshape(-1).size != circuit.n_weights:
            raise InputError(f"circuit {circuit.name!r} takes {circuit.n_weights} weights, got {w.size}")
        self.n_qubits, self.n_inputs, self.dtype = circuit.n_qubits, circuit.n_inputs, dtype
        self._count = 0
        wire_ops, rest = _split_prefix(resolve(circuit, w.reshape(-1)), circuit.n_qubits)
        self.wires = [self._wire_program(ops) for ops in wire_ops]
        self.steps = self._rest_program(rest, fold=circuit.n_qubits <= fold_max_qubits)
        self._measurements(circuit.observables)

    # ------------------------------------------------------------------ compile (numpy, once)

    def _constant(self, m: np.ndarray) -> tuple[str, str | None]:
        """Register the real (and, when not zero, imaginary) part of `m` as buffers; their names."""
        self._count += 1
        real = f"c{self._count}r"
        self.register_buffer(real, torch.as_tensor(m.real.copy(), dtype=self.dtype))
        if _is_real(m):
            return real, None
        imag = f"c{self._count}i"
        self.register_buffer(imag, torch.as_tensor(m.imag.copy(), dtype=self.dtype))
        return real, imag

    def _rotation(self, op: Op) -> InputGate:
        """An input gate: its angle's input, frequency, and the buffers of M = C + cos(f t) A + sin(f t) B."""
        if op.name not in ROTATIONS:
            raise InputError(f"gate {op.name} cannot take an input angle")
        f, basis = ROTATIONS[op.name]
        c, a, b = (self._constant(m) for m in basis)
        return InputGate(op.index, f, c, a, b, op.wires)

    def _wire_program(self, ops: list[Op]) -> list[Step]:
        """A wire's program: its constant vector before the first input gate, then each input gate followed by the
        constant gates after it as one 2 x 2 matrix."""
        groups: list[list[np.ndarray]] = [[]]  # constant matrices before the first input gate, after each one
        inputs: list[Op] = []
        for op in ops:
            if op.matrix is None:
                inputs.append(op)
                groups.append([])
            else:
                groups[-1].append(op.matrix)
        vector = _product(groups[0]) @ np.array([1.0, 0.0], dtype=complex)
        if not inputs:
            return [Constant("vector", self._constant(vector[None, :]))]
        program: list[Step] = [Constant("vector", self._constant(vector[None, :, None]))]
        for op, after in zip(inputs, groups[1:]):
            program.append(self._rotation(op))
            if after:
                program.append(Constant("matrix", self._constant(_product(after))))
        return program

    def _rest_program(self, rest: list[Op], fold: bool) -> list[Step]:
        steps: list[Step] = []
        D = 2**self.n_qubits
        stretch: np.ndarray | None = None
        for op in rest:
            if op.matrix is None:
                if stretch is not None:
                    steps.append(Constant("full", self._constant(stretch.T)))
                    stretch = None
                steps.append(self._rotation(op))
            elif fold:
                full = embed(self.n_qubits, op.wires, op.matrix).reshape(D, D)
                stretch = full if stretch is None else full @ stretch
            else:
                steps.append(Constant("fixed", self._constant(op.matrix.T), op.wires))
        if stretch is not None:
            steps.append(Constant("full", self._constant(stretch.T)))
        return steps

    def _measurements(self, observables: tuple[Observable, ...]) -> None:
        n, D = self.n_qubits, 2**self.n_qubits
        self.diagonal = [i for i, o in enumerate(observables) if o.diagonal]
        self.other = [i for i, o in enumerate(observables) if not o.diagonal]
        signs = np.stack([z_signs(len(observables[i].wires))[bit_index(n, observables[i].wires)]
                          for i in self.diagonal],
                         1) if self.diagonal else np.zeros((D, 0))
        self.signs_name = self._constant(signs.astype(complex))[0]
        self.paulis = []
        for i in self.other:
            o = observables[i]
            m = np.ones((1, 1), dtype=complex)
            for p in o.paulis:
                m = np.kron(m, FIXED[p])
            self.paulis.append(self._constant(embed(n, o.wires, m).reshape(D, D).T))
        self.order = [(self.diagonal + self.other).index(i) for i in range(len(observables))]

    # ------------------------------------------------------------------ forward (traced)

    def _buf(self, names: tuple[str, str | None]) -> Pair:
        real, imag = names
        return getattr(self, real), (getattr(self, imag) if imag else None)

    def _input_matrix(self, x: Tensor, step: InputGate) -> Pair:
        index, f, c, a, b, _wires = step
        t = x[:, index] * f
        cos, sin = torch.cos(t)[:, None, None], torch.sin(t)[:, None, None]
        (cr, ci), (ar, ai), (br, bi) = self._buf(c), self._buf(a), self._buf(b)
        real = cr + cos * ar + sin * br
        imag = _add(_add(ci, None if ai is None else cos * ai), None if bi is None else sin * bi)
        return real, imag

    def _wire_vector(self, x: Tensor, program: list[Step]) -> Pair:
        start = program[0]
        assert isinstance(start, Constant)
        v: Pair = self._buf(start.names)
        for step in program[1:]:
            m = self._input_matrix(x, step) if isinstance(step, InputGate) else self._buf(step.names)
            v = _matmul(m, v)
        if v[0].dim() == 3:
            v = (v[0].squeeze(-1), None if v[1] is None else v[1].squeeze(-1))
        return v

    def state(self, inputs: Tensor) -> Pair:
        """The final state (B, 2^n) as (real, imaginary or None)."""
        x = inputs.to(self.dtype)
        psi: Pair | None = None
        for program in self.wires:
            v = self._wire_vector(x, program)
            psi = v if psi is None else _kron(psi, v)
        assert psi is not None
        if not any(isinstance(step, InputGate) for program in self.wires for step in program):
            ones = x[:, :1] * 0 + 1  # the batch size, as an op the trace keeps dynamic
            psi = (psi[0] * ones, None if psi[1] is None else psi[1] * ones)
        for step in self.steps:
            if isinstance(step, InputGate):
                m = self._input_matrix(x, step)
                psi = self._on_wires(psi, (m[0].transpose(1, 2), None if m[1] is None else m[1].transpose(1, 2)),
                                     step.wires)
            elif step.kind == "full":
                psi = _rowmatmul(psi, self._buf(step.names))
            else:
                psi = self._on_wires(psi, self._buf(step.names), step.wires)
        return psi

    def _on_wires(self, psi: Pair, m_t: Pair, wires: tuple[int, ...]) -> Pair:
        """psi with a (d, d) or per-sample (B, d, d) matrix, given transposed, applied to `wires`."""
        n, k = self.n_qubits, len(wires)
        axes = [1 + w for w in wires]
        ends = list(range(n + 1 - k, n + 1))

        def gather(t: Tensor) -> tuple[Tensor, torch.Size]:
            moved = t.reshape([-1] + [2] * n).movedim(axes, ends)
            return moved.reshape(moved.shape[0], -1, 2**k), moved.shape

        def scatter(t: Tensor, shape: torch.Size) -> Tensor:
            return t.reshape(shape).movedim(ends, axes).reshape(-1, 2**n)

        real, shape = gather(psi[0])
        imag = None if psi[1] is None else gather(psi[1])[0]
        out = _rowmatmul((real, imag), m_t)
        return scatter(out[0], shape), None if out[1] is None else scatter(out[1], shape)

    def forward(self, inputs: Tensor) -> Tensor:
        real, imag = self.state(inputs)
        outputs = []
        if self.diagonal:
            probs = real * real if imag is None else real * real + imag * imag
            outputs.append(probs @ getattr(self, self.signs_name))
        for o in self.paulis:
            phi = _rowmatmul((real, imag), self._buf(o))
            value = real * phi[0] if imag is None else real * phi[0] + imag * phi[1]  # type: ignore[operator]
            outputs.append(value.sum(1, keepdim=True))
        out = torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]
        if self.order != list(range(len(self.order))):
            out = out[:, self.order]
        return out


def _add(a: Tensor | None, b: Tensor | None, sign: float = 1.0) -> Tensor | None:
    if a is None:
        return None if b is None else sign * b
    return a if b is None else a + sign * b


def _complex_product(ar: Tensor, ai: Tensor | None, br: Tensor, bi: Tensor | None,
                     mul: Callable[[Tensor, Tensor], Tensor]) -> Pair:
    real = mul(ar, br)
    if ai is not None and bi is not None:
        real = real - mul(ai, bi)
    imag = _add(None if ai is None else mul(ai, br), None if bi is None else mul(ar, bi))
    return real, imag


def _matmul(m: Pair, v: Pair) -> Pair:
    """(B or 1, d, d) @ (B or 1, d, 1) column vectors, complex."""
    vr, vi = v
    if vr.dim() == 2:
        vr, vi = vr[..., None], None if vi is None else vi[..., None]
    return _complex_product(m[0], m[1], vr, vi, torch.matmul)


def _rowmatmul(psi: Pair, m_t: Pair) -> Pair:
    """Rows times a transposed matrix, complex: (B, D) @ (D, D'), or (B, R, d) @ (d, d) or per sample (B, d, d)."""
    return _complex_product(psi[0], psi[1], m_t[0], m_t[1], torch.matmul)


def _kron(a: Pair, b: Pair) -> Pair:
    """Row-wise Kronecker product of (B or 1, p) and (B or 1, q): (B, p q), complex."""

    def outer(x: Tensor, y: Tensor) -> Tensor:
        return (x[:, :, None] * y[:, None, :]).flatten(1)

    return _complex_product(a[0], a[1], b[0], b[1], outer)
