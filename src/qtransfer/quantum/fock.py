"""A batched, differentiable continuous-variable simulator: pure states of 1–3 modes in the truncated Fock basis."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.quantum import fock_gates as gates
from qtransfer.quantum.fock_gates import HBAR, CubicPhase

MAX_MODES = 3


@dataclass(frozen=True)
class FockState:
    """Kets of a batch: tensor (B, c, …, c), one axis per mode; gates return new states (autograd-friendly).

    `models` K > 1 stacks K parameter sets: the batch is K groups of B/K elements, model-major, and a gate
    parameter of leading size K (not B) acts per group, so K networks run as one.
    """

    ket: Tensor
    models: int = 1

    def __post_init__(self) -> None:
        if self.models < 1 or self.ket.shape[0] % self.models:
            raise InputError(f"a batch of {self.ket.shape[0]} kets cannot hold {self.models} equal groups of models")

    @property
    def modes(self) -> int:
        return self.ket.dim() - 1

    @property
    def cutoff(self) -> int:
        return self.ket.shape[-1]

    @classmethod
    def fock(cls, photons: list[int] | tuple[int, ...], cutoff: int, batch: int = 1,
             dtype: torch.dtype = torch.complex64, device: torch.device | str = "cpu") -> FockState:
        """|n_1, …, n_M> for every batch element (vacuum when all n are 0)."""
        if not 1 <= len(photons) <= MAX_MODES:
            raise InputError(f"{len(photons)} modes requested; the Fock simulator holds 1 to {MAX_MODES} modes")
        if cutoff < 2 or any(not 0 <= n < cutoff for n in photons):
            raise InputError(f"photon numbers {list(photons)} must lie below the cutoff {cutoff} (cutoff ≥ 2)")
        ket = torch.zeros(batch, *[cutoff] * len(photons), dtype=dtype, device=device)
        index: tuple[slice | int, ...] = (slice(None), *photons)
        ket[index] = 1
        return cls(ket)

    @classmethod
    def vacuum(cls, modes: int, cutoff: int, batch: int = 1, dtype: torch.dtype = torch.complex64,
               device: torch.device | str = "cpu") -> FockState:
        """|0, …, 0> for every batch element."""
        return cls.fock([0] * modes, cutoff, batch, dtype, device)

    # ------------------------------------------------------------------ applying gates

    def _grouped(self, gate: Tensor, gate_dims: int) -> bool:
        """Whether a batched gate holds one entry per model (K) rather than one per element (B)."""
        return gate.dim() > gate_dims and self.models > 1 and gate.shape[0] == self.models != self.ket.shape[0]

    def _contract(self, spec: str, matrix: Tensor, gate_dims: int) -> FockState:
        """ket' = einsum(gate, ket): shared gate, one per element, or one per model group."""
        matrix = matrix.to(self.ket.dtype)
        if self._grouped(matrix, gate_dims):
            ket = self.ket.reshape(self.models, -1, *self.ket.shape[1:])
            spec = spec.replace("z", "m", 1).replace(",z", ",mz").replace("->z", "->mz")
            return FockState(torch.einsum(spec, matrix, ket).reshape(self.ket.shape), self.models)
        return FockState(torch.einsum(spec, matrix, self.ket), self.models)

    def apply(self, matrix: Tensor, mode: int) -> FockState:
        """A single-mode gate (c, c) shared by the batch, (B, c, c) one per element or (K, c, c) one per model."""
        axes = "ijk"[: self.modes]
        out = axes.replace(axes[mode], "y")
        return self._contract(f"{'z' if matrix.dim() == 3 else ''}y{axes[mode]},z{axes}->z{out}", matrix, 2)

    def apply_diagonal(self, diagonal: Tensor, mode: int) -> FockState:
        """A gate diagonal in the Fock basis, given as (c,), (B, c) or (K, c)."""
        diagonal = diagonal.to(self.ket.dtype)
        if self._grouped(diagonal, 1):
            diagonal = diagonal.repeat_interleave(self.ket.shape[0] // self.models, 0)
        shape = [diagonal.shape[0] if diagonal.dim() == 2 else 1] + [1] * self.modes
        shape[1 + mode] = self.cutoff
        return FockState(self.ket * diagonal.reshape(shape), self.models)

    def apply_two(self, matrix: Tensor, modes: tuple[int, int]) -> FockState:
        """A two-mode gate (c, c, c, c), or (B, …) / (K, …) batched, on modes (i, j)."""
        i, j = modes
        if i == j:
            raise InputError(f"a two-mode gate needs two different modes, got {modes}")
        axes = "ijk"[: self.modes]
        out = axes.replace(axes[i], "u").replace(axes[j], "v")
        return self._contract(f"{'z' if matrix.dim() == 5 else ''}uv{axes[i]}{axes[j]},z{axes}->z{out}", matrix, 4)

    def displace(self, r: Tensor | float, phi: Tensor | float, mode: int) -> FockState:
        """D(r·e^{iφ}) on `mode`."""
        return self.apply(gates.displacement(self._param(r), self._param(phi), self.cutoff), mode)

    def squeeze(self, r: Tensor | float, phi: Tensor | float, mode: int) -> FockState:
        """S(r·e^{iφ}) on `mode`."""
        return self.apply(gates.squeezing(self._param(r), self._param(phi), self.cutoff), mode)

    def rotate(self, phi: Tensor | float, mode: int) -> FockState:
        """R(φ) on `mode`."""
        return self.apply_diagonal(gates.rotation(self._param(phi), self.cutoff), mode)

    def kerr(self, kappa: Tensor | float, mode: int) -> FockState:
        """K(κ) on `mode`."""
        return self.apply_diagonal(gates.kerr(self._param(kappa), self.cutoff), mode)

    def cubic_phase(self, gamma: Tensor | float, mode: int, convention: CubicPhase = "exact") -> FockState:
        """V(γ) on `mode`, exact below the cutoff or as Strawberry Fields truncates it (`convention`)."""
        return self.apply(gates.cubic_phase_gate(self._param(gamma), self.cutoff, convention), mode)

    def beamsplitter(self, theta: Tensor | float, phi: Tensor | float, modes: tuple[int, int] = (0, 1)) -> FockState:
        """B(θ, φ) on two modes."""
        return self.apply_two(gates.beamsplitter(self._param(theta), self._param(phi), self.cutoff), modes)

    def _param(self, value: Tensor | float) -> Tensor:
        real = torch.float64 if self.ket.dtype == torch.complex128 else torch.float32
        if isinstance(value, Tensor):
            return value.to(device=self.ket.device, dtype=real)
        return torch.tensor(value, dtype=real, device=self.ket.device)

    # ------------------------------------------------------------------ measurements

    def probabilities(self) -> Tensor:
        """Fock probabilities |<n_1…n_M|ψ>|², shape (B, c, …, c)."""
        return self.ket.real**2 + self.ket.imag**2

    def norm(self) -> Tensor:
        """Probability kept below the cutoff, (B,): 1 − what leaked past it."""
        return self.probabilities().flatten(1).sum(1)

    def marginal(self, mode: int) -> Tensor:
        """Photon-number distribution of one mode, (B, c)."""
        p = self.probabilities()
        others = [1 + m for m in range(self.modes) if m != mode]
        return p.sum(others) if others else p

    def mean_photon(self, mode: int) -> Tensor:
        """<n̂> of one mode, (B,)."""
        n = torch.arange(self.cutoff, dtype=self.ket.real.dtype, device=self.ket.device)
        return self.marginal(mode) @ n

    def lowering(self, mode: int) -> Tensor:
        """<a> of one mode, (B,) complex."""
        k = self.ket.movedim(1 + mode, -1)
        root = torch.arange(1, self.cutoff, dtype=self.ket.real.dtype, device=self.ket.device).sqrt()
        return (k[..., :-1].conj() * k[..., 1:] * root).flatten(1).sum(1)

    def quadrature(self, mode: int, phi: float = 0.0) -> Tensor:
        """<x̂_φ> = <x̂ cos φ + p̂ sin φ> of one mode (ħ = 2), (B,)."""
        a = self.lowering(mode) * complex(math.cos(phi), -math.sin(phi))
        return math.sqrt(2 * HBAR) * a.real
