"""Quantum-kernel heads: SVMs on the engine's fidelity and projected kernels, fitted on training rows only."""
from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.svm import SVC

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.models import baselines
from qtransfer.models.heads import build_head, create_head
from qtransfer.quantum.embeddings import EMBEDDINGS, embedding_states, make_embedding
from qtransfer.quantum.gram import bloch_vectors, fidelity_kernel, projected_kernel

SHARED = {"n_qubits": 3, "depth": 6, "q_delta": 0.01, "backend": "torch", "pca": 0}


def data(n: int, classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_classification(n, 20, n_informative=6, n_classes=classes, n_clusters_per_class=1, class_sep=2.0,
                               random_state=seed)
    return torch.from_numpy(x), torch.from_numpy(y)


def head(name: str, embedding: str = "tutorial", shots: int = 0, classes: int = 2):
    return create_head(name, 20, classes, embedding=embedding, shots=shots, noise="", **SHARED)


def exact_kernel(name: str, h, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The head's kernel recomputed from its parts: embedding states of its angles, then the kernel."""
    emb = make_embedding(h.embedding.name, 3)
    sa, sb = embedding_states(emb, a), embedding_states(emb, b)
    if name == "qkernel":
        return fidelity_kernel(sa, sb)
    return projected_kernel(bloch_vectors(sa), bloch_vectors(sb), float(h.gamma))


@pytest.mark.parametrize("name", ["qkernel", "projected_qkernel"])
@pytest.mark.parametrize("embedding", sorted(EMBEDDINGS), ids=str)
def test_a_kernel_head_is_the_svm_scikit_learn_fits_on_its_training_gram_matrix(name: str, embedding: str) -> None:
    x, y = data(80)
    test_x, _ = data(30, seed=1)
    h = head(name, embedding)
    choices = h.fit(x, y, seed=3)
    assert set(choices) >= {"C", "bandwidth"}
    train_angles = float(h.bandwidth) * h.reduction(x)
    gram = exact_kernel(name, h, train_angles, train_angles).numpy()
    svc = SVC(kernel="precomputed", C=choices["C"]).fit(gram, y.numpy())
    test_angles = float(h.bandwidth) * h.reduction(test_x)
    expected = svc.decision_function(exact_kernel(name, h, test_angles, train_angles).numpy())
    logits = h(test_x).double()
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).numpy(), expected, atol=1e-8)
    assert (h(x).argmax(1) == y).float().mean() > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qkernel", "projected_qkernel"])
def test_kernel_heads_fit_only_kernels_among_training_rows_and_repeat_with_the_seed(name: str) -> None:
    x, y = data(60, classes=3)
    seen = []
    real = baselines.grid_search

    def spy(estimator, grid, k, labels, seed, **kw):
        seen.append(k.shape)
        return real(estimator, grid, k, labels, seed, **kw)

    with mock.patch.object(baselines, "grid_search", spy):
        a = head(name, classes=3)
        choices = a.fit(x, y, seed=5)
    assert seen and all(shape == (60, 60) for shape in seen)  # every candidate Gram matrix: training rows only
    b = head(name, classes=3)
    assert b.fit(x, y, seed=5) == choices
    assert torch.equal(a(x), b(x))
    fresh = head(name, classes=3)
    fresh.load_state_dict(a.state_dict())
    assert torch.equal(fresh(x), a(x)) and fresh.choices == choices


def test_shot_estimated_kernels_approach_the_exact_head_as_shots_grow() -> None:
    x, y = data(60)
    exact = head("qkernel")
    exact.fit(x, y, seed=0)
    gaps = []
    for shots in (64, 4096):
        h = head("qkernel", shots=shots)
        h.fit(x, y, seed=0)
        assert torch.equal(h(x), h(x))  # the draws are seeded: one evaluation repeats
        gaps.append(float((h(x).softmax(1) - exact(x).softmax(1)).abs().mean()))
    assert gaps[1] < gaps[0]


def test_qkernel_and_the_matched_svm_see_the_same_principal_components() -> None:
    x, y = data(50)
    q, s = head("qkernel"), create_head("svm", 20, 2, **{**SHARED, "pca": 3})
    q.fit(x, y, seed=0)
    s.fit(x, y, seed=0)
    torch.testing.assert_close(q.reduction(x), s.reduction(x))


def test_kernel_heads_refuse_a_circuit_template_or_a_pca_they_cannot_use() -> None:
    with pytest.raises(InputError, match=r"unknown embedding 'strongly_entangling'.*Known: iqp, tutorial"):
        TrainConfig(data="x", head="qkernel", embedding="strongly_entangling").validate()
    with pytest.raises(InputError, match="--pca"):
        TrainConfig(data="x", head="projected_qkernel", pca=8).validate()
    with pytest.raises(InputError, match="noise"):
        create_head("projected_qkernel", 20, 2, template="tutorial", shots=0, noise="depolarizing=0.01", **SHARED)


def test_embedding_and_template_are_one_name_each_and_both_are_listed(capsys) -> None:
    from qtransfer.cli import TRAIN_FLAGS, main
    from qtransfer.quantum.circuits import TEMPLATES
    from qtransfer.quantum.embeddings import EMBEDDINGS

    config = TrainConfig(data="x", head="qkernel", template="ring_cz", embedding="iqp", n_qubits=3)
    assert build_head(config, 20, 2).embedding.name == "iqp"  # the circuit template plays no part in a kernel head
    assert TRAIN_FLAGS["template"][1].endswith(": " + ", ".join(TEMPLATES))
    assert TRAIN_FLAGS["embedding"][1].endswith(": " + ", ".join(EMBEDDINGS))
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["templates"], info["embeddings"]) == (sorted(TEMPLATES), sorted(EMBEDDINGS))
    # a run saved when --template named a kernel head's embedding reads back with the same embedding
    old = TrainConfig.from_dict({"data": "x", "head": "projected_qkernel", "template": "iqp"})
    assert (old.embedding, old.template) == ("iqp", "tutorial")
