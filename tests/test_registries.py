"""Every registered head and embedding, read from its registry when the tests are collected, so a new entry is
tested without editing a test: heads build from settings, learn from small features, save and load their state,
and declare a search of SEARCH_SIZE configurations; embeddings' kernels equal PennyLane's; backbones say where their
weights come from and how they are checked; experiments have their place in the report. (Templates: see
tests/test_circuits.py; noise channels: tests/test_noise.py.)"""
from __future__ import annotations

import io
import math
from dataclasses import fields

import numpy as np
import pennylane as qml
import pytest
import torch
from PIL import Image
from support.pennylane_reference import QML_OPS

import qtransfer.experiments.reproduce  # noqa: F401 - its modules register the experiments
from qtransfer.config import TrainConfig
from qtransfer.experiments.reproduce.registry import EXPERIMENTS, ORDER
from qtransfer.models.backbones import BACKBONES, HASH_IN_NAME
from qtransfer.models.fitted import FittedHead
from qtransfer.models.heads import HEADS, build_head, create_head
from qtransfer.models.search import SEARCH_SIZE, points, search_space
from qtransfer.models.stacked import StackedHeads, stackable
from qtransfer.quantum.embeddings import EMBEDDINGS, Embedding, embedding_states, make_embedding
from qtransfer.quantum.gram import fidelity_kernel

HEAD_NAMES = sorted(HEADS)
EMBEDDING_NAMES = sorted(EMBEDDINGS)
FEATURES, CLASSES = 6, 3


def _settings(name: str) -> TrainConfig:
    """Small settings every head accepts: 2 qubits, 1 layer."""
    return TrainConfig(data="-", head=name, n_qubits=2, depth=1).validate()


def _features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random float64 feature rows and their labels: the class whose random direction is the most aligned."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g, dtype=torch.float64)
    directions = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    return x, (x @ directions).argmax(1)


def _fitted_at_first_point(name: str, head: FittedHead, x: torch.Tensor, y: torch.Tensor) -> None:
    """Fit with the first configuration of its search fixed: one fit, no inner cross-validation."""
    head.fix(points(search_space(name))[0])
    head.fit(x, y, seed=0)


# ------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("name", HEAD_NAMES, ids=str)
def test_every_head_builds_from_settings_and_gives_logits_per_class(name: str) -> None:
    config = _settings(name)
    head = build_head(config, FEATURES, CLASSES).double()
    assert isinstance(head, FittedHead) == config.fitted_head()
    x, y = _features(30)
    if isinstance(head, FittedHead):
        with pytest.raises(RuntimeError, match="not fitted"):
            head(x)
        _fitted_at_first_point(name, head, x, y)
        assert not list(head.parameters())  # fitted, not trained: nothing for an optimiser
    logits = head(x)
    assert logits.shape == (30, CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", HEAD_NAMES, ids=str)
def test_every_head_learns_from_small_random_features(name: str) -> None:
    torch.manual_seed(0)
    head = build_head(_settings(name), FEATURES, CLASSES).double()
    x, y = _features(60)
    if isinstance(head, FittedHead):  # one fit: better than chance on the rows it was fitted on
        _fitted_at_first_point(name, head, x, y)
        assert (head(x).argmax(1) == y).double().mean() > 0.5
        return
    loss = torch.nn.functional.cross_entropy
    before = loss(head(x), y)
    before.backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, pname  # every parameter is trained
    with torch.no_grad():
        for p in head.parameters():
            p -= 0.05 * p.grad  # one gradient step
    assert loss(head(x), y) < before


@pytest.mark.parametrize("name", HEAD_NAMES, ids=str)
def test_every_head_saves_and_loads_its_state_into_a_fresh_head(name: str) -> None:
    config = _settings(name)
    torch.manual_seed(1)
    head = build_head(config, FEATURES, CLASSES).double()
    x, y = _features(40, seed=2)
    if isinstance(head, FittedHead):
        _fitted_at_first_point(name, head, x, y)
    expected = head(x).detach()
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(2)
    fresh = build_head(config, FEATURES, CLASSES).double()
    if not isinstance(fresh, FittedHead):
        assert not torch.equal(fresh(x), expected)  # another seed: other weights until loaded
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh(x).detach(), expected)
    if isinstance(head, FittedHead):
        assert fresh.choices == head.choices


@pytest.mark.parametrize("name", [n for n in HEAD_NAMES if hasattr(HEADS[n], "stacked_forward")], ids=str)
def test_every_head_with_a_model_axis_stacked_equals_each_head_alone(name: str) -> None:
    heads = []
    for seed in range(3):
        torch.manual_seed(seed)
        heads.append(build_head(_settings(name), FEATURES, CLASSES).double())
    assert stackable(heads[0])
    x = torch.randn(3, 5, FEATURES, dtype=torch.float64)
    stacked = StackedHeads(heads)
    torch.testing.assert_close(stacked(x), torch.stack([h(x[k]) for k, h in enumerate(heads)]), atol=1e-12, rtol=0)
    for k, h in enumerate(heads):
        assert all(torch.equal(v, h.state_dict()[key]) for key, v in stacked.state_dict_of(k).items())


@pytest.mark.parametrize("name", HEAD_NAMES, ids=str)
def test_every_head_declares_a_search_of_the_same_size_that_it_can_be_given(name: str) -> None:
    space = search_space(name)
    assert len(points(space)) == SEARCH_SIZE
    assert all(len(set(values)) == len(values) for values in space.values())  # no value twice
    if TrainConfig(head=name).fitted_head():
        head = create_head(name, 8, 2, n_qubits=4, pca=4)
        assert isinstance(head, FittedHead)
        for point in points(space):
            head.fix(point)
            assert head.search() == {k: (v,) for k, v in point.items()}
    else:  # a trained head's search is over its run's settings
        assert set(space) <= {f.name for f in fields(TrainConfig)}
        for point in points(space):
            TrainConfig(data="-", head=name, **point).validate()


# ------------------------------------------------------------------------------- embeddings


def _pennylane_gates(embedding: Embedding, inputs: np.ndarray) -> None:
    """The embedding's circuit gate by gate in PennyLane operations, fed the embedding's inputs of one sample."""
    for g in embedding.circuit.gates:
        params = [inputs[p.index] if p.source == "input" else p.value for p in g.params]
        QML_OPS.get(g.name, getattr(qml, g.name))(*params, wires=list(g.wires))


@pytest.mark.parametrize("n_qubits", [1, 3])
@pytest.mark.parametrize("name", EMBEDDING_NAMES, ids=str)
def test_every_embeddings_kernel_equals_pennylanes_kernel_matrix(name: str, n_qubits: int) -> None:
    embedding = make_embedding(name, n_qubits)
    assert embedding.n_qubits == n_qubits and embedding.circuit.n_weights == 0
    g = torch.Generator().manual_seed(n_qubits)
    a = torch.rand(4, n_qubits, generator=g, dtype=torch.float64) * 2 * math.pi
    b = torch.rand(3, n_qubits, generator=g, dtype=torch.float64) * 2 * math.pi
    ours = fidelity_kernel(embedding_states(embedding, a), embedding_states(embedding, b))

    def embed(x: np.ndarray) -> None:
        _pennylane_gates(embedding, embedding.inputs(torch.from_numpy(x)[None])[0].numpy())

    @qml.qnode(qml.device("default.qubit", wires=n_qubits))
    def overlap(x: np.ndarray, y: np.ndarray):
        embed(x)
        qml.adjoint(embed)(y)
        return qml.probs(wires=range(n_qubits))

    reference = qml.kernels.kernel_matrix(a.numpy(), b.numpy(), lambda x, y: overlap(x, y)[0])
    assert ours.shape == (4, 3)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-10, rtol=0)
    assert np.ptp(reference) > 0.05  # the entries depend on the features


# ------------------------------------------------------------------------------- backbones and experiments


@pytest.mark.parametrize("name", sorted(BACKBONES), ids=str)
def test_every_backbone_says_where_its_weights_come_from_and_how_they_are_checked(name: str) -> None:
    spec = BACKBONES[name]
    assert spec.name == name
    if spec.url is not None:
        assert spec.url.startswith("https://") and spec.url.rsplit("/", 1)[1] == spec.file_name
    else:
        assert spec.packaged is not None or spec.cached is not None  # an installed package's or a library's cache
    pinned = spec.sha256 is not None and len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert pinned or HASH_IN_NAME.search(spec.file_name) or spec.cached is not None
    image = spec.transform()(Image.new("RGB", (300, 200), (120, 60, 30)))
    assert spec.resize >= spec.crop and image.shape == (3, spec.crop, spec.crop)
    assert len(spec.mean) == len(spec.std) == 3 and min(spec.std) > 0


@pytest.mark.parametrize("name", sorted(EXPERIMENTS), ids=str)
def test_every_experiment_has_one_place_in_the_reports_order(name: str) -> None:
    assert ORDER.count(name) == 1
    assert set(ORDER) <= set(EXPERIMENTS)
