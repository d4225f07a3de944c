"""The preprocessing of fitted heads: features z-scored, optionally after a PCA, fitted on training rows only."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.models.fitted import FittedModule


def check_pca(pca: int, n_samples: int, n_features: int) -> None:
    """Refuse a PCA to more components than min(n_samples, n_features) (or fewer than 0)."""
    limit = min(n_samples, n_features)
    if pca < 0 or pca > limit:
        raise InputError(f"pca={pca} components asked of {n_samples} samples with {n_features} features; a PCA "
                         f"gives at most min(n_samples={n_samples}, n_features={n_features}) = {limit}: "
                         f"choose pca between 1 and {limit}, or 0 for no PCA")


class Reduction(FittedModule):
    """x -> z-scored x, or z-scored first `pca` principal components of x (pca > 0); float64 out. Fitted by
    scikit-learn (PCA, StandardScaler) on training rows, applied by torch from buffers."""

    center: Tensor
    components: Tensor
    scale: Tensor

    def __init__(self, pca: int = 0):
        super().__init__()
        if pca < 0:
            raise InputError(f"pca must be >= 0 (0: no PCA), got {pca}")
        self.pca = pca
        for name in ("center", "components", "scale"):  # placeholders until fitted or loaded
            self.fitted_buffer(name, np.zeros(0))

    @classmethod
    def fitted(cls, x: np.ndarray, pca: int = 0) -> Reduction:
        """A Reduction fitted on the rows of x."""
        return cls(pca).fit(x)

    def fit(self, x: np.ndarray) -> Reduction:
        """Fit on the rows of x (training rows only); returns self."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(x, dtype=np.float64)
        check_pca(self.pca, *x.shape)
        if self.pca:
            pca = PCA(self.pca, svd_solver="full").fit(x)  # exact and deterministic
            center, components = pca.mean_, pca.components_
            scaler = StandardScaler().fit(pca.transform(x))  # its mean is 0: principal components are centered
        else:
            scaler = StandardScaler().fit(x)
            center, components = scaler.mean_, np.zeros((0, x.shape[1]))
        for name, value in (("center", center), ("components", components), ("scale", scaler.scale_)):
            self.fitted_buffer(name, value)
        return self

    @property
    def out_features(self) -> int:
        """How many values each row becomes (0 before fitting)."""
        return self.scale.numel()

    def forward(self, x: Tensor) -> Tensor:
        if not self.scale.numel():
            raise RuntimeError("Reduction is not fitted: fit it on training features, or load a fitted state dict")
        z = x.to(torch.float64) - self.center
        if self.components.numel():
            z = z @ self.components.T
        return z / self.scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        """forward on a NumPy array."""
        with torch.no_grad():
            return self(torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.scale.device)).cpu().numpy()

    def extra_repr(self) -> str:
        return f"pca={self.pca}, out_features={self.out_features}"
