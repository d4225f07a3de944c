"""The dense path (n <= 6): full 2^n x 2^n matrices per moment, differentiated by the adjoint method.

Constant moments are folded at compile time; each stretch of weight-only moments is multiplied into one matrix
per call (`dense_matrices.Stretch`); input moments act per sample. The state flows through one autograd node
whose backward carries lam = conj(dL/dstate) back and hands each family the Y it needs for its parameters.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit
from qtransfer.quantum.dense_matrices import Family, Stretch, StretchRef, moments
from qtransfer.quantum.engine import solo_stacked
from qtransfer.quantum.gate_matrices import FIXED, bit_index, embed, real_dtype, z_signs
from qtransfer.quantum.params import ParamIndex, Sources


class _DenseSimulation(torch.autograd.Function):
    """The dense simulation as one autograd node whose backward is the adjoint method."""

    @staticmethod
    def forward(ctx: Any, sim: DenseEngine, observe: bool, inputs: Tensor | None, weights: Tensor) -> Tensor:
        tape = Tape()
        out = sim.forward(inputs, weights, observe, tape)
        ctx.save_for_backward(inputs, weights)
        ctx.sim, ctx.observe, ctx.tape = sim, observe, tape
        return out if observe else out.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor | None, Tensor | None]:
        inputs, weights = ctx.saved_tensors
        gi, gw = ctx.sim.backward(ctx.tape, grad, ctx.observe, inputs, weights)
        need = ctx.needs_input_grad
        return None, None, gi if need[2] else None, gw if need[3] else None


@dataclass
class InputRecord:
    """An input moment's pass: its matrices, the shape of the state it met, and the state it made."""

    m: Tensor
    shape_in: torch.Size
    out: Tensor


@dataclass
class StretchRecord:
    """A stretch's pass: the state it met, its matrix U, and what its gradient needs (None without parameters)."""

    state_in: Tensor
    u: Tensor
    saved: tuple[tuple[Tensor, ...], Tensor] | None


@dataclass
class Tape:
    """What the forward keeps for the adjoint backward: each step's record, the final state, and O_k psi."""

    records: list[InputRecord | StretchRecord] = field(default_factory=list)
    final: Tensor | None = None
    ophi: Tensor | None = None


class DenseEngine:
    """The dense engine of `CompiledCircuit` (`engine.Engine`): full matrices of every moment (gates on disjoint
    wires), constant moments folded at compile time, each stretch that depends only on weights multiplied into
    one matrix per call; its gradient is the adjoint method, in one autograd node."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device: torch.device):
        self.circuit, self.dtype, self.device = circuit, dtype, device
        self.pindex = ParamIndex(circuit)
        self.consts = torch.as_tensor(self.pindex.consts, dtype=real_dtype(dtype), device=device)
        self._compile()

    def _compile(self) -> None:
        c = self.circuit
        D = self.D = 2**c.n_qubits
        moments_ = moments(c.gates)
        kinds = [c.gates[m[0]].kind for m in moments_]

        # Weight and input moments: families of equal signature, each built in one batched call.
        self.families: dict[str, list[Family]] = {"weight": [], "input": []}
        slot_of: dict[int, int] = {}
        for kind in ("weight", "input"):
            by_sig: dict[tuple[tuple[str, tuple[int, ...]], ...], list[int]] = {}
            for mi, m in enumerate(moments_):
                if kinds[mi] == kind:
                    by_sig.setdefault(tuple((c.gates[i].name, c.gates[i].wires) for i in m), []).append(mi)
            order: list[int] = []
            for mis in by_sig.values():
                fam = Family(c, [moments_[i] for i in mis], self.pindex)
                self.families[kind].append(fam.prepare(self.dtype, self.device))
                order += mis
            slot_of.update({mi: pos for pos, mi in enumerate(order)})
        self.n_moments = {k: sum(f.n_moments for f in fams) for k, fams in self.families.items()}

        # Steps over the moment sequence: input moments (their slot), and stretches between them.
        raw: list[int | list[StretchRef]] = []
        for mi, kind in enumerate(kinds):
            if kind == "input":
                raw.append(slot_of[mi])
                continue
            if kind == "const":
                ref: StretchRef = Family(c, [moments_[mi]], self.pindex).constant(self.pindex.consts)
            else:
                ref = slot_of[mi]
            last = raw[-1] if raw else None
            if isinstance(last, list):
                last.append(ref)
            else:
                raw.append([ref])

        # Constants at the very start act on |0...0>: keep only the state they make.
        init = np.zeros(D, dtype=complex)
        init[0] = 1
        if raw and isinstance(raw[0], list):
            refs = raw[0]
            while refs and isinstance(refs[0], np.ndarray):
                init = refs.pop(0) @ init
            if not refs:
                raw.pop(0)
        self.init = torch.as_tensor(init if self.dtype.is_complex else init.real, dtype=self.dtype, device=self.device)
        self.steps: list[int | Stretch] = [
            r if isinstance(r, int) else Stretch(r, D).prepare(self.dtype, self.device, self.n_moments["weight"])
            for r in raw]
        # the backward stops at the first step with parameters
        has_params = [isinstance(step, int) or bool(step.slots) for step in self.steps]
        self.first_param_step = has_params.index(True) if any(has_params) else len(self.steps)
        self._compile_observables()

    def _compile_observables(self) -> None:
        obs, n, D = self.circuit.observables, self.circuit.n_qubits, self.D
        self.signs: Tensor | None = None
        self.obs_mats: Tensor | None = None
        if all(o.diagonal for o in obs):
            signs = np.stack([z_signs(len(o.wires))[bit_index(n, o.wires)] for o in obs], 1)
            self.signs = torch.as_tensor(signs, dtype=real_dtype(self.dtype), device=self.device)
            self.signs2 = (2 * self.signs).T.contiguous()  # maps dL/d<obs> to dL/d|psi|^2, doubled
        else:
            mats = np.stack([embed(n, o.wires, functools.reduce(np.kron, [FIXED[p] for p in o.paulis])) for o in obs])
            mats = mats.reshape(len(obs) * D, D)  # row k * D + i is row i of observable k
            self.obs_mats = torch.as_tensor(mats if self.dtype.is_complex else mats.real, dtype=self.dtype,
                                            device=self.device)

    # -- the engine interface ----------------------------------------------------------------
    def outputs(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Expectation values (batch, n_outputs)."""
        out = self.run(inputs, weights, observe=True)
        return out.expand(batch, -1) if out.dim() == 1 else out

    def state(self, inputs: Tensor | None, weights: Tensor, batch: int) -> Tensor:
        """Final states (batch, 2, ..., 2)."""
        s = self.run(inputs, weights, observe=False)
        s = s.expand(batch, -1) if s.dim() == 1 else s
        return s.reshape((batch,) + (2,) * self.circuit.n_qubits)

    def stacked(self, inputs: Tensor | None, weights: Tensor, batch: int, observe: bool) -> Tensor:
        """Outputs (models, batch, n_outputs) or states (models, batch, 2, ..., 2) of many models in one call."""
        models = weights.shape[0]
        if models == 1:
            return solo_stacked(self, inputs, weights, batch, observe)
        out = self.run(inputs, weights, observe)
        out = out.expand(models, batch, out.shape[-1])
        return out if observe else out.reshape((models, batch) + (2,) * self.circuit.n_qubits)

    def run(self, inputs: Tensor | None, weights: Tensor, observe: bool) -> Tensor:
        """The dense simulation, through the adjoint autograd node when a gradient may be asked for."""
        if torch.is_grad_enabled() and (weights.requires_grad or (inputs is not None and inputs.requires_grad)):
            out: Tensor = _DenseSimulation.apply(self, observe, inputs, weights)
            return out
        return self.forward(inputs, weights, observe)

    # -- forward and adjoint -----------------------------------------------------------------
    def _family_matrices(self, kind: str, sources: Sources) -> Tensor | None:
        mats = []
        for fam in self.families[kind]:
            src = sources[fam.source]
            src = src if src.dim() < 3 else src.reshape(-1, src.shape[-1])  # a model axis: (models * rows, size)
            mats.append(fam.matrices(src if src.dim() == 1 else src.T))
        if not mats:
            return None
        return mats[0] if len(mats) == 1 else torch.cat(mats)

    def _sources(self, inputs: Tensor | None, weights: Tensor) -> Sources:
        """This call's parameter sources; weights with a model axis (models, n_weights) broadcast over rows."""
        return Sources(inputs, weights if weights.dim() == 1 else weights.unsqueeze(1), self.consts)

    def forward(self, inputs: Tensor | None, weights: Tensor, observe: bool, tape: Tape | None = None) -> Tensor:
        """Outputs (batch, n_outputs) or final state (batch, D); no batch dim when no input moment ran. With a model
        axis (weights (models, n_weights), inputs (models, batch, n_inputs)): (models, batch or 1, ...)."""
        sources = self._sources(inputs, weights)
        models = None if weights.dim() == 1 else weights.shape[0]
        wmats = self._family_matrices("weight", sources)
        imats = self._family_matrices("input", sources) if inputs is not None else None
        state = self.init if models is None else self.init.view(1, 1, -1)
        for step in self.steps:
            record: InputRecord | StretchRecord
            if isinstance(step, int):
                assert imats is not None
                m = imats[step]  # (batch, D, D), or (models * batch, D, D)
                if models is not None:
                    m = m.view(models, -1, self.D, self.D)
                    new = (m @ state.unsqueeze(-1)).squeeze(-1)
                else:
                    new = m @ state if state.dim() == 1 else torch.bmm(m, state.unsqueeze(-1)).squeeze(-1)
                record = InputRecord(m, state.shape, new)
            else:
                u, saved = step.forward(wmats, tape is not None)
                new = state @ u.mT
                record = StretchRecord(state, u, saved)
            if tape is not None:
                tape.records.append(record)
            state = new
        if not observe:
            return state
        if tape is not None:
            tape.final = state
        if self.signs is not None:
            p = (state * state.conj()).real if state.is_complex() else state * state
            return p @ self.signs
        assert self.obs_mats is not None
        ophi = torch.unflatten(state @ self.obs_mats.mT, -1, (-1, self.D))  # (..., K, D): O_k psi
        if tape is not None:
            tape.ophi = ophi
        out = (ophi * state.conj().unsqueeze(-2)).sum(-1)
        return out.real if out.is_complex() else out

    def _lam(self, tape: Tape, grad: Tensor, observe: bool) -> Tensor:
        """conj(dL/dstate) of the final state."""
        if not observe:
            return grad.conj()
        if self.signs is not None:
            assert tape.final is not None
            return tape.final.conj() * (grad @ self.signs2)
        assert tape.ophi is not None
        return 2 * (grad.to(self.dtype).unsqueeze(-2) @ tape.ophi.conj()).squeeze(-2)

    def backward(
        self, tape: Tape, grad: Tensor, observe: bool, inputs: Tensor | None, weights: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """Gradients wrt inputs and weights by the adjoint method; lam is conj(dL/dstate) as it goes back."""
        lam = self._lam(tape, grad, observe)
        yw: Tensor | None = None
        yi: list[Tensor | None] = [None] * self.n_moments["input"]
        first = self.first_param_step
        for k in range(len(self.steps) - 1, first - 1, -1):
            step, record = self.steps[k], tape.records[k]
            if isinstance(record, InputRecord):
                assert isinstance(step, int)
                y = record.out.unsqueeze(-1) * lam.unsqueeze(-2)
                yi[step] = y if y.dim() == 3 else y.flatten(0, 1)
                if k > first:
                    lam = (lam.unsqueeze(-2) @ record.m).squeeze(-2)
                    lam = lam if lam.shape == record.shape_in else lam.sum_to_size(record.shape_in)
                continue
            assert isinstance(step, Stretch)
            if record.saved is not None:
                y = step.grads(record.state_in, lam, record.saved)
                if step.all_slots:
                    yw = y
                else:
                    yw = y.new_zeros(self.n_moments["weight"], *y.shape[1:]) if yw is None else yw
                    yw.index_copy_(0, step.index, y)
            if k > first:
                lam = lam @ record.u
        ready = [y for y in yi if y is not None]
        yin = (ready[0].unsqueeze(0) if len(ready) == 1 else torch.stack(ready)) if ready else None
        ys = {"weight": yw, "input": yin}
        gi, gw = self._parameter_grads(ys, self._sources(inputs, weights), weights)
        return (None if gi is None or inputs is None else gi.view(inputs.shape)), gw

    def _parameter_grads(self, ys: dict[str, Tensor | None], sources: Sources,
                         weights: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """dL/dinputs and dL/dweights from each kind's Y per moment, through the families."""
        gi: Tensor | None = None
        gw: Tensor | None = None
        n_in, n_w = self.circuit.n_inputs, self.circuit.n_weights
        for kind, y in ys.items():
            fams, start = self.families[kind], 0
            for fam in fams:
                assert y is not None
                g = fam.grads(y if len(fams) == 1 else y[start : start + fam.n_moments], sources[fam.source])
                start += fam.n_moments
                if fam.source == "input":
                    gi = g if gi is None else gi + g
                    continue
                if fam.source == "all":
                    gi = g[:, :n_in] if gi is None else gi + g[:, :n_in]
                    g = g[:, n_in:]
                    g = g.sum(0) if weights.dim() == 1 else torch.unflatten(g, 0, (weights.shape[0], -1)).sum(1)
                g = g if fam.source == "weight" else g[..., :n_w]
                gw = g if gw is None else gw + g
        return gi, gw
