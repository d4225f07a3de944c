"""Quantum-kernel heads simulated by the engine: the fidelity kernel |<psi(x')|psi(x)>|^2 of an embedding circuit
(`qkernel`) and the projected kernel of its one-qubit reduced states (`projected_qkernel`, Huang et al. 2021), on
the features reduced to n_qubits principal components, z-scored and scaled to angles, in a support-vector
machine. C, the angle bandwidth and the projected kernel's gamma are chosen by inner cross-validation on the
training split. With `shots`, every kernel entry the head uses is estimated from that many measurements; with
`noise` (qkernel), the fidelity is the all-zeros probability of the noisy compute-uncompute circuit."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.models.baselines import SVM_C, ReducedHead, fit_kernel_machine
from qtransfer.quantum.embeddings import Embedding, embedding_states, make_embedding
from qtransfer.quantum.gram import (
    bloch_vectors,
    estimate_from_shots,
    fidelity_kernel,
    projected_kernel,
)

BANDWIDTHS = (0.5, 1.0)  # angles = bandwidth * z-scored principal components
PROJECTED_GAMMA_FACTORS = (0.3, 3.0)  # times 1 / (mean squared Frobenius distance of the training states)
PROJECTED_C = (1.0, 100.0)  # with two bandwidths and two gammas: 8 configurations, as every head searches


def _check_pca(name: str, n_qubits: int, pca: int) -> None:
    if pca not in (0, n_qubits):
        raise InputError(f"head {name!r} reduces the features to --qubits ({n_qubits}) principal components; "
                         f"--pca {pca} differs: drop --pca or set it to {n_qubits}")


class QuantumKernelHead(ReducedHead):
    """Shared by the kernel heads: reduction to n_qubits components, angles, embedded states, shot estimates."""

    name = ""
    bandwidth: Tensor
    support_angles: Tensor
    dual_coef: Tensor
    intercept: Tensor
    seed: Tensor

    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Refuse an unknown --embedding or a --pca other than --qubits before any work."""
        make_embedding(settings.embedding, settings.n_qubits)
        _check_pca(cls.name, settings.n_qubits, settings.pca)

    def __init__(self, in_features: int, n_classes: int, n_qubits: int = 4, embedding: str = "tutorial",
                 shots: int = 0, pca: int = 0, **shared: Any):
        _check_pca(self.name, n_qubits, pca)
        super().__init__(self.name, in_features, n_classes, n_qubits, **shared)
        self.embedding: Embedding = make_embedding(embedding, n_qubits)
        self.shots = shots
        self.fitted_buffer("bandwidth", np.ones(()))
        self.fitted_buffer("support_angles", np.zeros((0, n_qubits)))
        self.fitted_buffer("dual_coef", np.zeros((0, 0)))
        self.fitted_buffer("intercept", np.zeros(0))
        self.fitted_buffer("seed", np.zeros((), dtype=np.int64))

    def states(self, angles: Tensor) -> Tensor:
        """The embedded states (N, 2^n) of angles (N, n), in complex128."""
        return embedding_states(self.embedding, angles.double())

    def generator(self, offset: int) -> torch.Generator:
        """A generator for shot draws, seeded from the fit's seed: every call with the same offset draws alike."""
        return torch.Generator().manual_seed(int(self.seed) * 1_000_003 + offset)

    def gram(self, a: Tensor, b: Tensor | None, setting: float) -> Tensor:
        """Kernel entries between angles a and b (b None: a against itself, the training Gram matrix)."""
        raise NotImplementedError

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        self.fitted_buffer("seed", np.array(seed, dtype=np.int64))
        space = self.search()
        candidates = [(bw, s) for bw in space["bandwidth"] for s in self.settings(torch.from_numpy(bw * z))]
        grams = [self.gram(torch.from_numpy(bw * z), None, s).cpu().numpy() for bw, s in candidates]
        best, machine = fit_kernel_machine(grams, y, seed, self.n_classes, space["C"])
        bandwidth, setting = candidates[best]
        self.fitted_buffer("bandwidth", bandwidth)
        self.fitted_buffer("support_angles", bandwidth * z[machine.support])
        self.fitted_buffer("dual_coef", machine.dual)
        self.fitted_buffer("intercept", machine.intercept)
        self.keep_setting(setting)
        return {"C": machine.C, "bandwidth": bandwidth, **self.described(setting)}

    def settings(self, angles: Tensor) -> list[float]:
        """The kernel's own hyper-parameter values to search for these training angles (none: [0.0])."""
        return [0.0]

    def keep_setting(self, setting: float) -> None:
        """Keep the chosen kernel hyper-parameter for prediction."""

    def described(self, setting: float) -> dict[str, Any]:
        """The chosen kernel hyper-parameter by name, for the run's record."""
        return {}

    def logits(self, z: Tensor) -> Tensor:
        return self.gram(self.bandwidth * z, self.support_angles, self.kept()) @ self.dual_coef + self.intercept

    def kept(self) -> float:
        """The kernel hyper-parameter chosen by the fit."""
        return 0.0


class FidelityKernelHead(QuantumKernelHead):
    """qkernel: an SVM on the fidelity kernel of the embedding circuit named by --embedding (tutorial, iqp)."""

    name = "qkernel"
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"C": SVM_C, "bandwidth": BANDWIDTHS}

    def __init__(self, in_features: int, n_classes: int, n_qubits: int = 4, embedding: str = "tutorial",
                 shots: int = 0, pca: int = 0, noise: str = "", **shared: Any):
        super().__init__(in_features, n_classes, n_qubits, embedding, shots, pca, **shared)
        from qtransfer.quantum.density import NoiseModel

        self.noise = NoiseModel.parse(noise) if noise else None

    def gram(self, a: Tensor, b: Tensor | None, setting: float) -> Tensor:
        if self.noise is not None:
            from qtransfer.quantum.compute_uncompute import noisy_fidelity_kernel

            exact = noisy_fidelity_kernel(self.embedding, a.double(), (a if b is None else b).double(), self.noise)
        else:
            sa = self.states(a)
            exact = fidelity_kernel(sa, sa if b is None else self.states(b))
        if not self.shots:
            return exact
        symmetric = b is None and self.noise is None  # a noisy state against itself is measured too
        return estimate_from_shots(exact, self.shots, self.generator(0 if b is None else 1), symmetric=symmetric)


class ProjectedKernelHead(QuantumKernelHead):
    """projected_qkernel: an SVM on exp(-gamma sum_k ||rho_k(x) - rho_k(x')||_F^2) of the embedded states' one-qubit
    reduced density matrices (with shots: each Bloch component estimated from that many measurements)."""

    name = "projected_qkernel"
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {
        "C": PROJECTED_C, "bandwidth": BANDWIDTHS, "gamma_factor": PROJECTED_GAMMA_FACTORS,
    }
    gamma: Tensor

    def __init__(self, in_features: int, n_classes: int, n_qubits: int = 4, embedding: str = "tutorial",
                 shots: int = 0, pca: int = 0, noise: str = "", **shared: Any):
        if noise:
            raise InputError("projected_qkernel does not simulate noise; use qkernel with --noise, or drop --noise")
        super().__init__(in_features, n_classes, n_qubits, embedding, shots, pca, **shared)
        self.fitted_buffer("gamma", np.ones(()))

    def bloch(self, angles: Tensor, offset: int) -> Tensor:
        """Bloch vectors (N, n, 3) of the embedded states, each component from `shots` measurements if set."""
        exact = bloch_vectors(self.states(angles))
        if not self.shots:
            return exact
        up = torch.binomial(torch.full_like(exact, self.shots), ((1 + exact) / 2).clamp(0, 1),
                            generator=self.generator(offset))
        return 2 * up / self.shots - 1

    def settings(self, angles: Tensor) -> list[float]:
        b = self.bloch(angles, 0).reshape(len(angles), -1)
        spread = float(((b - b.mean(0)) ** 2).sum(1).mean())  # mean squared distance to the mean Bloch vector
        scale = 1.0 / spread if spread > 0 else 1.0  # ~ 1 / (half the mean squared pair distance)
        return [scale * f for f in self.search()["gamma_factor"]]

    def gram(self, a: Tensor, b: Tensor | None, setting: float) -> Tensor:
        ba = self.bloch(a, 0)
        return projected_kernel(ba, ba if b is None else self.bloch(b, 1), setting)

    def keep_setting(self, setting: float) -> None:
        self.fitted_buffer("gamma", setting)

    def described(self, setting: float) -> dict[str, Any]:
        return {"gamma": setting}

    def kept(self) -> float:
        return float(self.gamma)
