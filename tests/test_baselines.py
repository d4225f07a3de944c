"""Tuned classical baselines: scikit-learn fits them on the training features only, torch applies them and
agrees with scikit-learn; their fitted state saves and loads like any head's."""
from __future__ import annotations

import contextlib
import functools
import io
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from qtransfer.errors import InputError
from qtransfer.models import baselines
from qtransfer.models.fitted import FittedHead
from qtransfer.models.heads import create_head
from qtransfer.models.reduction import Reduction

SHARED = {"n_qubits": 4, "depth": 6, "q_delta": 0.01, "template": "tutorial", "backend": "torch", "shots": 0}
ESTIMATORS = {"logreg": LogisticRegression, "svm": SVC, "mlp": MLPClassifier}
# (n_classes, n_train, n_features, pca): binary with more features than training rows; 4 classes after a PCA
CASES = {2: (2, 60, 80, 0), 4: (4, 100, 12, 3)}
SEED = 7


def _data(n_classes: int, n_train: int, n_features: int, random_state: int = 0) -> tuple[Any, ...]:
    x, y = make_classification(n_train + 40, n_features, n_informative=6, n_redundant=2, n_classes=n_classes,
                               n_clusters_per_class=1, class_sep=1.5, random_state=random_state)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@contextlib.contextmanager
def _spy(*classes: type):
    """Record every fit of these scikit-learn classes: a list of (estimator, X, y), in call order."""
    calls: list[tuple[Any, np.ndarray, Any]] = []
    with contextlib.ExitStack() as stack:
        for cls in classes:
            def record(self, X, y=None, *args, _fit=cls.fit, **kwargs):
                calls.append((self, np.array(X, copy=True), None if y is None else np.array(y, copy=True)))
                return _fit(self, X, y, *args, **kwargs)

            stack.enter_context(mock.patch.object(cls, "fit", autospec=True, side_effect=record))
        yield calls


@functools.cache
def _fitted(name: str, n_classes: int) -> tuple[FittedHead, tuple[Any, ...], list]:
    """The head fitted once per module on its case's training rows, and every scikit-learn fit it made."""
    _, n_train, n_features, pca = CASES[n_classes]
    data = _data(n_classes, n_train, n_features)
    head = create_head(name, n_features, n_classes, pca=pca, **SHARED)
    # the spy sees fits in this process only: the grid search must not hand them to workers on idle cores
    with _spy(PCA, StandardScaler, LogisticRegression, SVC, OneVsRestClassifier, MLPClassifier) as calls, \
            mock.patch("qtransfer.models.fitted.free_cores", return_value=1):
        choices = head.fit(torch.from_numpy(data[0]), torch.from_numpy(data[1]), SEED)
    assert choices == head.choices and choices
    return head, data, calls


def _last_fit(calls: list, cls: type) -> tuple[Any, np.ndarray, Any]:
    return [c for c in calls if type(c[0]) is cls][-1]


def _rows_within(a: np.ndarray, b: np.ndarray) -> bool:
    """Every row of a is (to rounding) a row of b."""
    distances = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return bool(np.all(distances.min(1) < 1e-18 * max(1.0, float((b ** 2).sum(1).max()))))


def _probs(head: FittedHead, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(head(torch.from_numpy(x)), 1).numpy()


# --- Reduction -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pca", [0, 5])
def test_reduction_is_scikit_learns_pca_then_standard_scaler(pca: int) -> None:
    x, _, x_test, _ = _data(3, 90, 20)
    reduction = Reduction.fitted(x, pca)
    steps = [PCA(pca)] if pca else []
    expected = make_pipeline(*steps, StandardScaler()).fit(x).transform(x_test)
    got = reduction(torch.from_numpy(x_test)).numpy()
    signs = np.sign((got * expected).sum(0))  # a principal component is defined up to its sign
    assert got.shape == (40, pca or 20) and got.dtype == np.float64
    np.testing.assert_allclose(got * signs, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(reduction.transform(x).mean(0), 0, atol=1e-12)  # z-scored on its training rows
    np.testing.assert_allclose(reduction.transform(x).std(0), 1, atol=1e-12)

    fresh = Reduction()  # other (empty) buffer shapes, no PCA asked: the state dict decides
    fresh.load_state_dict(reduction.state_dict())
    assert torch.equal(fresh(torch.from_numpy(x_test)), reduction(torch.from_numpy(x_test)))


def test_reduction_refuses_more_components_than_samples_or_features_and_use_before_fitting() -> None:
    x, *_ = _data(2, 10, 20)
    with pytest.raises(InputError, match=r"pca=11 .*n_samples=10, n_features=20"):
        Reduction.fitted(x, 11)
    with pytest.raises(InputError, match=r"pca=21 .*n_samples=30, n_features=20"):
        Reduction.fitted(np.vstack([x, x, x]), 21)
    with pytest.raises(RuntimeError, match="not fitted"):
        Reduction(3)(torch.zeros(2, 20))


# --- each head agrees with the scikit-learn model it was fitted as --------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_softmax_is_predict_proba_of_the_fitted_logistic_regression(n_classes: int) -> None:
    head, (x, y, x_test, _), calls = _fitted("logreg", n_classes)
    model, fitted_on, labels = _last_fit(calls, LogisticRegression)
    z, z_test = head.reduction.transform(x), head.reduction.transform(x_test)
    np.testing.assert_array_equal(fitted_on, z)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(_probs(head, x_test), model.predict_proba(z_test), rtol=0, atol=1e-10)

    if n_classes > 2:
        return
    # the choice is the best C of a grid search over the same seeded stratified folds
    search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": baselines.LOGREG_C},
                          cv=StratifiedKFold(5, shuffle=True, random_state=SEED)).fit(z, y)
    assert head.choices == {"C": search.best_params_["C"]}
    refit = LogisticRegression(C=head.choices["C"], max_iter=1000).fit(z, y)
    np.testing.assert_allclose(_probs(head, x_test), refit.predict_proba(z_test), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_svm_decision_values_and_predictions_are_those_of_scikit_learns_rbf_svc(n_classes: int) -> None:
    head, (x, y, x_test, _), _calls = _fitted("svm", n_classes)
    z, z_test = head.reduction.transform(x), head.reduction.transform(x_test)
    C, gamma = head.choices["C"], head.choices["gamma"]
    assert gamma == pytest.approx(head.choices["gamma_factor"] / (z.shape[1] * z.var()), rel=1e-12)
    svc = SVC(C=C, gamma=gamma) if n_classes == 2 else OneVsRestClassifier(SVC(C=C, gamma=gamma))
    svc.fit(z, y)

    decision = head.decision_function(torch.from_numpy(x_test)).numpy()
    assert decision.shape == ((40,) if n_classes == 2 else (40, n_classes))
    np.testing.assert_allclose(decision, svc.decision_function(z_test), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(head(torch.from_numpy(x_test)).argmax(1).numpy(), svc.predict(z_test))
    if n_classes == 2:  # probabilities are sigmoid(decision value), not Platt-calibrated
        np.testing.assert_allclose(_probs(head, x_test)[:, 1], 1 / (1 + np.exp(-decision)), rtol=0, atol=1e-12)
    machines = svc.estimators_ if n_classes > 2 else [svc]
    assert len(head.support_vectors) == len(np.unique(np.concatenate([m.support_ for m in machines])))

    if n_classes > 2:
        return
    # the choice is a best point of a grid search of the RBF SVC over the same seeded stratified folds
    gammas = [f / (z.shape[1] * z.var()) for f in baselines.SVM_GAMMA_FACTORS]
    search = GridSearchCV(SVC(), {"C": baselines.SVM_C, "gamma": gammas},
                          cv=StratifiedKFold(5, shuffle=True, random_state=SEED)).fit(z, y)
    scores, points = search.cv_results_["mean_test_score"], search.cv_results_["params"]
    chosen = [i for i, p in enumerate(points) if p["C"] == C and p["gamma"] == pytest.approx(gamma, rel=1e-12)]
    assert len(chosen) == 1 and scores[chosen[0]] == max(scores)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_mlp_probabilities_are_predict_proba_of_the_fitted_network(n_classes: int) -> None:
    head, (x, y, x_test, _), calls = _fitted("mlp", n_classes)
    net, fitted_on, labels = _last_fit(calls, MLPClassifier)
    z, z_test = head.reduction.transform(x), head.reduction.transform(x_test)
    np.testing.assert_array_equal(labels, y)
    # the network was fitted on the reduced training rows in an orthonormal basis of their span
    basis = np.linalg.lstsq(z, fitted_on, rcond=None)[0]
    np.testing.assert_allclose(z @ basis, fitted_on, atol=1e-10)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)
    assert basis.shape[1] == min(len(x) - 1, z.shape[1])  # z-scored rows span one dimension fewer than their count
    assert (net.hidden_layer_sizes, net.alpha) == ((head.choices["width"],), head.choices["alpha"])
    np.testing.assert_allclose(_probs(head, x_test), net.predict_proba(z_test @ basis), rtol=0, atol=1e-8)


# --- what a fit sees, what it depends on, what it keeps ---------------------------------------------------------

@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_every_array_scikit_learn_fits_on_is_made_of_training_rows(name: str, n_classes: int) -> None:
    head, (x, y, _, _), calls = _fitted(name, n_classes)
    pca = CASES[n_classes][3]
    reduction_fits = [c for c in calls if isinstance(c[0], (PCA, StandardScaler))]
    assert len(reduction_fits) == (2 if pca else 1)
    np.testing.assert_array_equal(reduction_fits[0][1], x)  # the Reduction is fitted on all training rows

    model_fits = [fitted_on for estimator, fitted_on, _ in calls if isinstance(estimator, ESTIMATORS[name])]
    assert len(model_fits) > 5
    z = head.reduction.transform(x)
    if name == "svm":  # kernels between training rows: of all of them, or of an inner fold's
        folds = [np.arange(len(x))] + [t for t, _ in StratifiedKFold(5, shuffle=True, random_state=SEED).split(z, y)]
        scale = 1 / (z.shape[1] * z.var())
        grams = [rbf_kernel(z, gamma=scale * f) for f in baselines.SVM_GAMMA_FACTORS]
        for fitted_on in model_fits:
            assert any(fitted_on.shape == (len(rows), len(rows)) and np.allclose(fitted_on, gram[np.ix_(rows, rows)],
                                                                                   rtol=0, atol=1e-12)
                       for rows in folds for gram in grams)
        return
    rows = model_fits[-1]  # the refit on all training rows: every fold's rows must be among them
    assert len(rows) == len(x)
    if name == "logreg":
        np.testing.assert_array_equal(rows, z)
    for fitted_on in model_fits:
        assert len(fitted_on) < len(x) or fitted_on is rows
        assert _rows_within(fitted_on, rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
def test_the_seed_decides_the_choices_and_outputs_whatever_was_fitted_before(name: str) -> None:
    head, (x, y, x_test, _), _ = _fitted(name, 2)
    other = _data(2, 40, x.shape[1], random_state=5)
    again = create_head(name, x.shape[1], 2, pca=0, **SHARED)
    with mock.patch.multiple(baselines, LOGREG_C=(1.0,), SVM_C=(1.0,), SVM_GAMMA_FACTORS=(1.0,), MLP_WIDTHS=(4,),
                             MLP_ALPHAS=(1.0,)):  # a quick fit first, of other rows and one grid point
        again.fit(torch.from_numpy(other[0]), torch.from_numpy(other[1]), SEED + 1)
    assert again.fit(torch.from_numpy(x), torch.from_numpy(y), SEED) == head.choices
    assert torch.equal(again(torch.from_numpy(x_test)), head(torch.from_numpy(x_test)))


@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_a_state_dict_loads_into_a_fresh_head_of_the_same_name(name: str, n_classes: int) -> None:
    head, (x, _, x_test, _), _ = _fitted(name, n_classes)
    pca = CASES[n_classes][3]
    expected = head(torch.from_numpy(x_test))
    fresh = create_head(name, x.shape[1], n_classes, pca=pca, **SHARED)
    assert {k: v.shape for k, v in fresh.state_dict().items() if torch.is_tensor(v)} != \
        {k: v.shape for k, v in head.state_dict().items() if torch.is_tensor(v)}
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(fresh(torch.from_numpy(x_test)), expected) and fresh.choices == head.choices

    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    loaded = create_head(name, x.shape[1], n_classes, pca=pca, **SHARED)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(loaded(torch.from_numpy(x_test)), expected) and loaded.choices == head.choices
    assert loaded(torch.from_numpy(x_test).float()).dtype == torch.float32


# --- settings and refusals ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
def test_heads_built_by_name_take_the_shared_settings_and_refuse_others(name: str) -> None:
    head = create_head(name, 30, 3, pca=0, **SHARED)
    assert isinstance(head, FittedHead) and head.n_classes == 3 and not list(head.parameters())
    with pytest.raises(TypeError, match="unknown settings"):
        create_head(name, 30, 3, pca=0, width=16)
    with pytest.raises(RuntimeError, match="not fitted"):
        head(torch.zeros(2, 30))


@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
def test_a_pca_larger_than_the_features_or_samples_is_refused_naming_both(name: str) -> None:
    with pytest.raises(InputError, match=r"pca=31 .* 30 features"):
        create_head(name, 30, 2, pca=31, **SHARED)
    x, y, *_ = _data(2, 20, 30)
    head = create_head(name, 30, 2, pca=25, **SHARED)
    with pytest.raises(InputError, match=r"pca=25 .*n_samples=20, n_features=30"):
        head.fit(torch.from_numpy(x), torch.from_numpy(y), 0)


def test_a_fit_needs_every_class_in_the_training_rows() -> None:
    x, y, *_ = _data(2, 20, 10)
    with pytest.raises(InputError, match=r"class\(es\) \[2\] have none"):
        create_head("logreg", 10, 3).fit(torch.from_numpy(x), torch.from_numpy(y), 0)


def test_a_fixed_c_still_scores_the_svms_gammas_and_a_fixed_point_skips_inner_cv(monkeypatch) -> None:
    import sklearn.model_selection as selection  # grid_search imports GridSearchCV from it when called

    built = []
    original = selection.GridSearchCV
    monkeypatch.setattr(selection, "GridSearchCV", lambda *a, **k: built.append(1) or original(*a, **k))
    x, y, _, _ = _data(2, 60, 8)
    for fixed, searches in (({"C": 10.0}, len(baselines.SVM_GAMMA_FACTORS)), ({"C": 10.0, "gamma_factor": 1.0}, 0)):
        built.clear()
        head = create_head("svm", 8, 2, **SHARED)
        head.fix(fixed)
        choices = head.fit(torch.from_numpy(x), torch.from_numpy(y), SEED)
        assert choices["C"] == 10.0 and len(built) == searches, (fixed, len(built))
        if "gamma_factor" in fixed:
            assert choices["gamma_factor"] == 1.0
