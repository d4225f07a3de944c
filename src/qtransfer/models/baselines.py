"""Tuned classical baselines on the same features as the quantum heads: logistic regression, an RBF SVM and a
one-hidden-layer network, fitted by scikit-learn with hyper-parameters chosen by inner cross-validation on the
training split, then applied by torch from buffers."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from qtransfer.errors import InputError
from qtransfer.models.fitted import FittedHead, grid_search, inner_cv, training_arrays
from qtransfer.models.reduction import Reduction
from qtransfer.models.settings import check_ignored

# Every head searches 8 configurations (models.search.SEARCH_SIZE), so that tuning is equal across heads.
LOGREG_C = tuple(float(c) for c in np.logspace(-3, 2, 8))
SVM_C = (1.0, 10.0, 100.0, 1000.0)
SVM_GAMMA_FACTORS = (0.3, 1.0)  # times scikit-learn's "scale": 1 / (n_features * variance)
MLP_WIDTHS = (16, 64)
MLP_ALPHAS = (1e-2, 1e-1, 1.0, 1e2)
# One L-BFGS iteration costs ~1.5 ms whatever the size (scikit-learn's and SciPy's overhead): 3 inner folds and
# at most 100 iterations keep a fit at a few seconds on one core.
MLP_FOLDS = 3
MLP_ITERATIONS = 100


def zero_and_f(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(.., 1) weights and (1,) bias of one decision value f -> those of logits [0, f] (softmax: [1 - s, s] with
    s = sigmoid(f), scikit-learn's predict_proba of a logistic output)."""
    return np.concatenate([np.zeros_like(weight), weight], -1), np.concatenate([np.zeros_like(bias), bias])


def minus_and_plus_half_f(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(.., 1) weights and (1,) bias of one decision value f -> those of logits [-f/2, f/2] (softmax gives
    sigmoid(f) to class 1, argmax is f > 0)."""
    return np.concatenate([-weight, weight], -1) / 2, np.concatenate([-bias, bias]) / 2


@dataclass
class KernelMachine:
    """A support-vector machine on a precomputed kernel, as a kernel expansion: logits = K(x, support) @ dual +
    intercept, with `support` indices into the training rows (binary: logits [-f/2, f/2])."""

    support: np.ndarray
    dual: np.ndarray
    intercept: np.ndarray
    C: float


def fit_kernel_machine(kernels: Sequence[np.ndarray], y: np.ndarray, seed: int, n_classes: int,
                       c_values: Sequence[float] = SVM_C) -> tuple[int, KernelMachine]:
    """Search C of an SVM (one-vs-rest above two classes) by inner CV on each candidate training Gram matrix;
    returns the index of the best candidate (the first of equals) and its machine refitted on all rows."""
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    machine, key = SVC(kernel="precomputed"), "C"
    if n_classes > 2:
        machine, key = OneVsRestClassifier(machine), "estimator__C"
    searches = [grid_search(machine, {key: tuple(c_values)}, k, y, seed, scored=len(kernels) > 1) for k in kernels]
    best = max(range(len(searches)), key=lambda i: searches[i].best_score_)
    search = searches[best]
    machines = [search.best_estimator_] if n_classes == 2 else search.best_estimator_.estimators_
    support = np.unique(np.concatenate([m.support_ for m in machines]))
    dual = np.zeros((len(support), len(machines)))
    for c, m in enumerate(machines):  # dual_coef_ and intercept_ are signed as decision_function's
        dual[np.searchsorted(support, m.support_), c] = m.dual_coef_[0]
    intercept = np.array([m.intercept_[0] for m in machines])
    if n_classes == 2:
        dual, intercept = minus_and_plus_half_f(dual, intercept)
    return best, KernelMachine(support, dual, intercept, float(search.best_params_[key]))


class ReducedHead(FittedHead):
    """A fitted head on the Reduction of its features (z-scored, after a PCA to `pca` components when pca > 0).
    The Reduction is fitted once on all training rows (it sees no labels; the inner folds share it), then the
    subclass's model on the reduced rows."""

    def __init__(self, name: str, in_features: int, n_classes: int, pca: int = 0, **shared: Any):
        super().__init__(n_classes)
        check_ignored(name, shared)
        if pca > in_features:
            raise InputError(f"pca={pca} is more than the {in_features} features head {name!r} is given: "
                             f"choose pca <= {in_features}, or 0 for no PCA")
        self.reduction = Reduction(pca)

    def fit(self, features: Tensor, labels: Tensor, seed: int) -> dict[str, Any]:
        """Fit the Reduction, then the model with hyper-parameters by inner CV; returns the chosen ones."""
        x, y = training_arrays(features, labels, self.n_classes)
        z = self.reduction.fit(x).transform(x)
        self.choices = self.fit_reduced(z, y, seed)
        return self.choices

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        """Fit the model on reduced training features; returns the chosen hyper-parameters."""
        raise NotImplementedError

    def logits(self, z: Tensor) -> Tensor:
        """Logits (float64) of reduced features."""
        raise NotImplementedError

    def forward(self, features: Tensor) -> Tensor:
        return self.logits(self.reduction(features)).to(features.dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.choices.items())


class LogisticRegressionHead(ReducedHead):
    """L2-penalized logistic regression (multinomial above two classes), C chosen by inner CV."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"C": LOGREG_C}
    weight: Tensor
    bias: Tensor

    def __init__(self, in_features: int, n_classes: int, pca: int = 0, **shared: Any):
        super().__init__("logreg", in_features, n_classes, pca, **shared)
        self.fitted_buffer("weight", np.zeros((0, 0)))
        self.fitted_buffer("bias", np.zeros(0))

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression

        model, choices = inner_cv(LogisticRegression(solver="lbfgs", max_iter=1000), self.search(), z, y, seed)
        weight, bias = model.coef_.T, model.intercept_
        if self.n_classes == 2:
            weight, bias = zero_and_f(weight, bias)
        self.fitted_buffer("weight", weight)
        self.fitted_buffer("bias", bias)
        return choices

    def logits(self, z: Tensor) -> Tensor:
        return z @ self.weight + self.bias


class SVMHead(ReducedHead):
    """RBF support-vector machine, C and gamma chosen by inner CV; one-vs-rest above two classes. Its
    probabilities are the softmax of decision values, not Platt-calibrated: accuracy, balanced accuracy and ROC-AUC
    rank on them; a log-loss of them is not a calibrated model's."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"C": SVM_C, "gamma_factor": SVM_GAMMA_FACTORS}
    support_vectors: Tensor
    dual_coef: Tensor
    intercept: Tensor
    gamma: Tensor

    def __init__(self, in_features: int, n_classes: int, pca: int = 0, **shared: Any):
        super().__init__("svm", in_features, n_classes, pca, **shared)
        self.fitted_buffer("support_vectors", np.zeros((0, 0)))
        self.fitted_buffer("dual_coef", np.zeros((0, 0)))  # (support vectors, classes)
        self.fitted_buffer("intercept", np.zeros(0))
        self.fitted_buffer("gamma", np.zeros(()))

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        from sklearn.metrics.pairwise import euclidean_distances

        # Kernels computed once per gamma (by BLAS) and sliced per fold: libsvm's own RBF is ~5x slower.
        squared = euclidean_distances(z, squared=True)
        scale = 1.0 / (z.shape[1] * z.var()) if z.var() > 0 else 1.0
        space = self.search()
        factors = space["gamma_factor"]
        best, machine = fit_kernel_machine([np.exp(-scale * f * squared) for f in factors], y, seed,
                                           self.n_classes, space["C"])
        gamma = float(scale * factors[best])
        self.fitted_buffer("support_vectors", z[machine.support])
        self.fitted_buffer("dual_coef", machine.dual)
        self.fitted_buffer("intercept", machine.intercept)
        self.fitted_buffer("gamma", gamma)
        return {"C": machine.C, "gamma": gamma, "gamma_factor": factors[best]}

    def kernel(self, z: Tensor) -> Tensor:
        """exp(-gamma |z - sv|^2) against every support vector."""
        sv = self.support_vectors
        squared = (z * z).sum(1, keepdim=True) + (sv * sv).sum(1) - 2 * z @ sv.T
        return torch.exp(-self.gamma * squared.clamp_min(0))

    def logits(self, z: Tensor) -> Tensor:
        return self.kernel(z) @ self.dual_coef + self.intercept

    def decision_function(self, features: Tensor) -> Tensor:
        """scikit-learn's decision values (float64): (n,) for two classes, (n, classes) one-vs-rest above."""
        logits = self.logits(self.reduction(features))
        return logits[:, 1] - logits[:, 0] if self.n_classes == 2 else logits


class MLPHead(ReducedHead):
    """One hidden ReLU layer, its width and L2 penalty alpha chosen by 3-fold inner CV; at most 100 L-BFGS
    iterations from a seeded start.

    The network is fitted on the reduced features in an orthonormal basis of the training rows' span, then the
    basis is folded into the first layer. With an L2 penalty this is the same objective (first-layer weights
    orthogonal to every training row change no training output and only add penalty), on at most n_samples
    inputs instead of n_features: about 5x cheaper for 244 samples of 1280 features."""

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"width": MLP_WIDTHS, "alpha": MLP_ALPHAS}
    hidden_weight: Tensor
    hidden_bias: Tensor
    out_weight: Tensor
    out_bias: Tensor

    def __init__(self, in_features: int, n_classes: int, pca: int = 0, **shared: Any):
        super().__init__("mlp", in_features, n_classes, pca, **shared)
        for name in ("hidden_weight", "hidden_bias", "out_weight", "out_bias"):
            self.fitted_buffer(name, np.zeros((0, 0) if name.endswith("weight") else 0))

    def fit_reduced(self, z: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        _, s, vt = np.linalg.svd(z, full_matrices=False)
        basis = vt[:max(1, int((s > s[0] * max(z.shape) * np.finfo(float).eps).sum()))].T
        space = self.search()
        grid = {"hidden_layer_sizes": [(w,) for w in space["width"]], "alpha": space["alpha"]}
        net = MLPClassifier(activation="relu", solver="lbfgs", max_iter=MLP_ITERATIONS, random_state=seed)
        with warnings.catch_warnings():  # the iteration cap is deliberate
            warnings.simplefilter("ignore", ConvergenceWarning)
            net, choices = inner_cv(net, grid, z @ basis, y, seed, folds=MLP_FOLDS)
        out_weight, out_bias = net.coefs_[1], net.intercepts_[1]
        if self.n_classes == 2:
            out_weight, out_bias = zero_and_f(out_weight, out_bias)
        self.fitted_buffer("hidden_weight", basis @ net.coefs_[0])
        self.fitted_buffer("hidden_bias", net.intercepts_[0])
        self.fitted_buffer("out_weight", out_weight)
        self.fitted_buffer("out_bias", out_bias)
        return {"width": choices["hidden_layer_sizes"][0], "alpha": choices["alpha"]}

    def logits(self, z: Tensor) -> Tensor:
        return torch.relu(z @ self.hidden_weight + self.hidden_bias) @ self.out_weight + self.out_bias
