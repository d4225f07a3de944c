"""Matrix elements of continuous-variable gates in the Fock basis, exact below the cutoff.

Each gate's elements <m|U|n> for m, n < cutoff are those of the infinite-dimensional operator: they come
from closed forms and from recursions that only ever apply creation operators (which never need a row
above the cutoff), not from exponentiating a truncated generator. Parameters are tensors of any batch
shape `...`; single-mode gates return `(..., c, c)`, the beam splitter `(..., c, c, c, c)` indexed
[out mode 1, out mode 2, in mode 1, in mode 2]. Conventions are Strawberry Fields' and PennyLane's (ħ = 2).
"""
from __future__ import annotations

import math
from functools import cache
from typing import Literal

import torch
from torch import Tensor

from qtransfer.errors import InputError

HBAR = 2.0

CubicPhase = Literal["exact", "truncated"]
CUBIC_PHASE_CONVENTIONS: dict[str, str] = {
    "exact": "the elements of exp(iγx̂³/6) below the cutoff (converged: independent of the cutoff)",
    "truncated": "exp of x̂³ built from the truncated ladder operator (Strawberry Fields' Vgate; the paper's "
                 "simulator): unitary on the cutoff, but far from the exact gate in its high Fock elements",
}


def _creation(v: Tensor, axis: int = -1) -> Tensor:
    """a† along `axis`: (a† v)[m] = sqrt(m) v[m-1], same length (the top row is never needed)."""
    n = v.shape[axis]
    shifted = torch.cat([torch.zeros_like(v.narrow(axis, 0, 1)), v.narrow(axis, 0, n - 1)], dim=axis)
    shape = [1] * v.dim()
    shape[axis] = n
    return shifted * torch.arange(n, dtype=v.real.dtype, device=v.device).sqrt().reshape(shape)


def _annihilation(v: Tensor) -> Tensor:
    """a along the last axis: (a v)[m] = sqrt(m+1) v[m+1]; one element shorter (the last row is unknown)."""
    n = v.shape[-1]
    return v[..., 1:] * torch.arange(1, n, dtype=v.real.dtype, device=v.device).sqrt()


def _broadcast(a: Tensor | float, b: Tensor | float) -> tuple[Tensor, Tensor]:
    """Two parameters as tensors of one broadcast shape."""
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    shape = torch.broadcast_shapes(ta.shape, tb.shape)  # type: ignore[no-untyped-call]  # untyped in torch
    return ta.expand(shape), tb.expand(shape)


def displacement(r_: Tensor | float, phi_: Tensor | float, cutoff: int) -> Tensor:
    """D(α) = exp(α a† − α* a), α = r·e^{iφ}."""
    r, phi = _broadcast(r_, phi_)
    alpha = r * torch.exp(1j * phi)
    m = torch.arange(1, cutoff, dtype=r.dtype, device=r.device)
    steps = alpha.unsqueeze(-1) / m.sqrt()
    column = torch.cat([torch.ones_like(alpha).unsqueeze(-1), torch.cumprod(steps, dim=-1)], dim=-1)
    column = column * torch.exp(-(r**2) / 2).unsqueeze(-1)
    columns = [column]
    for n in range(1, cutoff):  # D|n> = (a† − α*) D|n−1> / sqrt(n)
        column = (_creation(column) - alpha.conj().unsqueeze(-1) * column) / math.sqrt(n)
        columns.append(column)
    return torch.stack(columns, dim=-1)


def squeezing(r_: Tensor | float, phi_: Tensor | float, cutoff: int) -> Tensor:
    """S(z) = exp((z* a² − z a†²)/2), z = r·e^{iφ}."""
    r, phi = _broadcast(r_, phi_)
    length = 2 * cutoff - 1  # each column step below consumes one row through `a`
    t = -torch.exp(1j * phi) * torch.tanh(r)
    k = torch.arange(1, cutoff, dtype=r.dtype, device=r.device)
    ratios = t.unsqueeze(-1) * torch.sqrt((2 * k - 1) / (2 * k))
    even = torch.cat([torch.ones_like(t).unsqueeze(-1), torch.cumprod(ratios, dim=-1)], dim=-1)
    even = even / torch.sqrt(torch.cosh(r)).unsqueeze(-1)
    column = torch.zeros(*t.shape, length, dtype=t.dtype, device=t.device)
    column[..., 0::2] = even
    ch, sh = torch.cosh(r).unsqueeze(-1), (torch.sinh(r) * torch.exp(-1j * phi)).unsqueeze(-1)
    columns = [column[..., :cutoff]]
    for n in range(1, cutoff):  # S|n> = (cosh r a† + e^{−iφ} sinh r a) S|n−1> / sqrt(n)
        column = (ch * _creation(column)[..., :-1] + sh * _annihilation(column)) / math.sqrt(n)
        columns.append(column[..., :cutoff])
    return torch.stack(columns, dim=-1)


def rotation(phi_: Tensor | float, cutoff: int) -> Tensor:
    """R(φ) = exp(iφ n̂), as its diagonal (..., c)."""
    phi = torch.as_tensor(phi_)
    n = torch.arange(cutoff, dtype=phi.dtype if phi.is_floating_point() else torch.float32, device=phi.device)
    return torch.exp(1j * phi.unsqueeze(-1) * n)


def kerr(kappa_: Tensor | float, cutoff: int) -> Tensor:
    """K(κ) = exp(iκ n̂²), as its diagonal (..., c)."""
    kappa = torch.as_tensor(kappa_)
    n = torch.arange(cutoff, dtype=kappa.dtype if kappa.is_floating_point() else torch.float32, device=kappa.device)
    return torch.exp(1j * kappa.unsqueeze(-1) * n**2)


def beamsplitter(theta_: Tensor | float, phi_: Tensor | float, cutoff: int) -> Tensor:
    """B(θ, φ) = exp(θ(e^{iφ} a b† − e^{−iφ} a† b)) on two modes, (..., c, c, c, c)."""
    theta, phi = _broadcast(theta_, phi_)
    cos = torch.cos(theta).to(torch.complex128 if theta.dtype == torch.float64 else torch.complex64)
    cos = cos[..., None, None]
    sin_a = (torch.sin(theta) * torch.exp(1j * phi))[..., None, None]  # B a† B† = cos a† + e^{iφ} sin b†
    sin_b = (torch.sin(theta) * torch.exp(-1j * phi))[..., None, None]  # B b† B† = cos b† − e^{−iφ} sin a†
    state = torch.zeros(*theta.shape, cutoff, cutoff, dtype=cos.dtype, device=theta.device)
    state[..., 0, 0] = 1
    first = [state]
    for m in range(1, cutoff):
        state = (cos * _creation(state, -2) + sin_a * _creation(state, -1)) / math.sqrt(m)
        first.append(state)
    column = torch.stack(first, dim=-1)  # (..., p, q, m) for n = 0
    cos, sin_b = cos[..., None], sin_b[..., None]
    columns = [column]
    for n in range(1, cutoff):
        column = (cos * _creation(column, -2) - sin_b * _creation(column, -3)) / math.sqrt(n)
        columns.append(column)
    return torch.stack(columns, dim=-1)


@cache
def _hermite_grid(cutoff: int, points: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Grid x, and ψ_n(x)·sqrt(dx) for n < cutoff (ħ = 2): trapezoid weights folded in."""
    span = math.sqrt(HBAR * (2 * cutoff + 1)) + 9 * math.sqrt(HBAR)  # past the turning point, ψ_n < 1e-17
    x = torch.linspace(-span, span, points, dtype=torch.float64)
    dx = float(x[1] - x[0])
    psi = torch.empty(cutoff, points, dtype=torch.float64)
    psi[0] = torch.exp(-(x**2) / (2 * HBAR)) / (math.pi * HBAR) ** 0.25
    if cutoff > 1:
        psi[1] = math.sqrt(2 / HBAR) * x * psi[0]
    for n in range(2, cutoff):  # normalised Hermite-function recursion, stable for every n
        psi[n] = math.sqrt(2 / (HBAR * n)) * x * psi[n - 1] - math.sqrt((n - 1) / n) * psi[n - 2]
    return x.to(dtype), (psi * math.sqrt(dx)).to(dtype)


def grid_points(cutoff: int, gamma: Tensor) -> int:
    """Grid size at which cubic_phase's integrals converge to ~1e-12 (measured up to cutoff 35, |γ| ≤ 2)."""
    strength = max(1, math.ceil(float(gamma.detach().abs().max()))) if gamma.numel() else 1
    return 64 * (cutoff // 2 + 2) * strength + 1


def cubic_phase(gamma: Tensor | float, cutoff: int, points: int | None = None) -> Tensor:
    """V(γ) = exp(iγ x̂³ / (3ħ)): <m|V|n> = ∫ ψ_m ψ_n e^{iγx³/3ħ} dx on a fine grid (converged to ~1e-12)."""
    gamma = torch.as_tensor(gamma)
    points = points or grid_points(cutoff, gamma)
    dtype = torch.float64 if gamma.dtype == torch.float64 else torch.float32
    x, psi = _hermite_grid(cutoff, points, dtype)
    x, psi = x.to(gamma.device), psi.to(gamma.device)
    angle = gamma.to(dtype).unsqueeze(-1).unsqueeze(-2) * (x**3 / (3 * HBAR))  # (..., 1, K)
    return torch.complex((psi * torch.cos(angle)) @ psi.T, (psi * torch.sin(angle)) @ psi.T)


@cache
def _truncated_cube(cutoff: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Eigenvalues and eigenvectors of x̂³/(3ħ) with x̂ = sqrt(ħ/2)(a + a†) from the truncated a."""
    root = torch.arange(1, cutoff, dtype=torch.float64).sqrt()
    x = math.sqrt(HBAR / 2) * (torch.diag(root, 1) + torch.diag(root, -1))
    values, vectors = torch.linalg.eigh(x @ x @ x / (3 * HBAR))
    return values.to(dtype), vectors.to(dtype)


def cubic_phase_truncated(gamma: Tensor | float, cutoff: int) -> Tensor:
    """V(γ) as Strawberry Fields builds it: exp(iγ X/(3ħ)), X the cube of the truncated x̂ (unitary, not exact)."""
    gamma = torch.as_tensor(gamma)
    dtype = torch.float64 if gamma.dtype == torch.float64 else torch.float32
    values, vectors = (t.to(gamma.device) for t in _truncated_cube(cutoff, dtype))
    phase = torch.exp(1j * gamma.to(dtype).unsqueeze(-1) * values)  # (..., c)
    return (vectors * phase.unsqueeze(-2)) @ vectors.T.to(phase.dtype)


def cubic_phase_gate(gamma: Tensor | float, cutoff: int, convention: CubicPhase = "exact") -> Tensor:
    """V(γ) in the named convention (see CUBIC_PHASE_CONVENTIONS)."""
    if convention == "exact":
        return cubic_phase(gamma, cutoff)
    if convention == "truncated":
        return cubic_phase_truncated(gamma, cutoff)
    raise InputError(f"cubic phase convention {convention!r} is not one of {', '.join(CUBIC_PHASE_CONVENTIONS)}; "
                     "pick one of them")
