"""timm models as network A: `--backbone timm:<model>` with a saved state dict, its features checked against timm's own
forward, cached by weights hash; bad names, missing weights and a missing timm get one-line answers."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.real_images import real_subset

from qtransfer.cli import main
from qtransfer.config import TrainConfig
from qtransfer.errors import (
    InputError,
    MissingPackageError,
    WeightsError,
    WeightsUnavailable,
)
from qtransfer.models.backbones import create_backbone, get_spec
from qtransfer.storage import content_hash

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

MODEL = "test_resnet"  # a 0.4 M-parameter ResNet at 160 x 160: timm's own test model


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, and empty Hugging Face and torch caches: the tests see only the weights they put there."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf"


@pytest.fixture(scope="module")
def data(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real images per class and split."""
    return real_subset(hymenoptera, tmp_path_factory.mktemp("timm-data"), {"train": 4, "val": 4})


def saved_weights(path: Path, seed: int) -> Path:
    """A state dict of the full timm classifier (with its `fc`), as a trained checkpoint would hold it."""
    torch.manual_seed(seed)
    model = timm.create_model(MODEL, pretrained=False)
    for m in model.modules():  # non-trivial BatchNorm statistics, so that loading them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = model.state_dict()
    if path.suffix == ".safetensors":
        safetensors_torch.save_file(state, path)
    else:
        torch.save(state, path)
    return path


def timm_features(weights: Path, paths: list[Path]) -> torch.Tensor:
    """The reference: timm's full model, timm's eval transform, the pooled pre-logits features."""
    model = timm.create_model(MODEL, pretrained=False)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return model.forward_head(model.forward_features(images), pre_logits=True)


def _train(data: Path, weights: Path, cache: Path, out: Path) -> dict:
    argv = ["--quiet", "train", "--data", str(data), "--backbone", f"timm:{MODEL}", "--weights", str(weights),
            "--head", "linear", "--epochs", "2", "--workers", "0", "--cache-dir", str(cache), "--out", str(out)]
    assert main(argv) == 0
    (summary,) = out.glob("*/summary.json")
    return json.loads(summary.read_text())


@pytest.mark.slow
def test_train_on_a_timm_model_caches_its_features_by_weights_hash(data: Path, tmp_path: Path) -> None:
    weights = saved_weights(tmp_path / "a.pth", seed=0)
    cache = tmp_path / "cache"
    first = _train(data, weights, cache, tmp_path / "run1")
    assert first["features_computed"] == {"train": 8, "val": 8}
    assert list((tmp_path / "run1").glob("*-timm-test_resnet-linear"))  # no colon in the run directory's name

    second = _train(data, weights, cache, tmp_path / "run2")
    assert second["features_computed"] == {"train": 0, "val": 0}
    assert second["best_val_acc"] == first["best_val_acc"]
    (key,) = (cache / "features").iterdir()

    from qtransfer.features.pipeline import load_features

    config = TrainConfig(data=str(data), backbone=f"timm:{MODEL}", weights=str(weights), cache_dir=str(cache),
                         num_workers=0)
    feats = load_features(config, augment_views=1, progress=False)
    assert feats.train.computed == feats.val.computed == 0
    assert feats.weights_id == content_hash(weights)
    assert feats.train.features.shape == (8, timm.create_model(MODEL, num_classes=0).num_features)
    reference = timm_features(weights, feats.train.paths + feats.val.paths)
    cached = torch.cat([feats.train.features.tensor(), feats.val.features.tensor()])
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-4)
    assert reference.std() > 0.01  # the comparison is not between two constant vectors
    # the augmented view is a random crop of the same image at the same size and normalisation
    assert feats.views.shape == (8, 2, 96)
    assert torch.equal(feats.views[:, 0], feats.train.features.tensor())
    assert not torch.allclose(feats.views[:, 1], feats.views[:, 0], atol=1e-3)

    before = set((cache / "features").iterdir())
    other = _train(data, saved_weights(tmp_path / "b.pth", seed=1), cache, tmp_path / "run3")
    assert other["features_computed"] == {"train": 8, "val": 8}  # other weights, another cache key
    (new,) = set((cache / "features").iterdir()) - before
    assert new.name != key.name


def test_a_safetensors_file_loads_like_the_same_pth(data: Path, tmp_path: Path) -> None:
    pth = saved_weights(tmp_path / "w.pth", seed=3)
    safe = saved_weights(tmp_path / "w.safetensors", seed=3)
    images = torch.stack([get_spec(f"timm:{MODEL}").transform()(Image.open(p).convert("RGB"))
                          for p in sorted((data / "val" / "bees").glob("*.jpg"))])
    with torch.no_grad():
        a = create_backbone(f"timm:{MODEL}", weights=pth)(images)
        b = create_backbone(f"timm:{MODEL}", weights=safe)(images)
    assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="does not fit backbone timm:test_vit"):
        create_backbone("timm:test_vit", weights=pth)


def test_offline_default_weights_name_the_file_to_put_and_are_then_found(data: Path, tmp_path: Path,
                                                                         offline: Path) -> None:
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone(f"timm:{MODEL}")
    message = str(err.value)
    assert "https://huggingface.co/timm/test_resnet.r160_in1k/resolve/main/model.safetensors" in message
    assert "--weights FILE" in message and "timm.create_model('test_resnet', pretrained=True)" in message
    target = Path(re.search(r" at (\S+model\.safetensors)", message).group(1))
    assert target.is_relative_to(offline)

    target.parent.mkdir(parents=True)
    saved_weights(target, seed=4)
    backbone = create_backbone(f"timm:{MODEL}")
    assert backbone.weights_id == content_hash(target)
    assert backbone.out_features == 96


def test_a_hugging_face_cache_blob_is_checked_against_its_name(tmp_path: Path, offline: Path) -> None:
    # the cache's layout: refs/main holds the commit, snapshots/<commit>/<file> links to blobs/<sha256>
    repo, commit = offline / "models--timm--test_resnet.r160_in1k", "0" * 40
    weights = saved_weights(tmp_path / "w.safetensors", seed=5)
    digest = content_hash(weights)
    for folder in ("blobs", "refs", f"snapshots/{commit}"):
        (repo / folder).mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / digest
    blob.write_bytes(weights.read_bytes())
    (repo / "snapshots" / commit / "model.safetensors").symlink_to(Path("..", "..", "blobs", digest))
    assert create_backbone(f"timm:{MODEL}").weights_id == digest

    blob.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(WeightsError, match=f"expected {digest}"):
        create_backbone(f"timm:{MODEL}")


def test_weights_with_a_download_url_are_looked_for_in_torchs_checkpoint_folder(tmp_path: Path) -> None:
    file = "resnet18_a1_0-d63eafa0.pth"
    url = f"https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/{file}"
    checkpoint = tmp_path / "torch/hub/checkpoints" / file
    with pytest.raises(WeightsUnavailable, match=re.escape(f"put {url} at {checkpoint}")):
        create_backbone("timm:resnet18.a1_in1k")


@pytest.mark.parametrize("name", ["test_resnet", "resnet18.a1_in1k", "vit_base_patch16_clip_224.openai",
                                  "convnext_base.fb_in22k_ft_in1k_384"])
def test_preprocessing_is_timms_eval_transform(name: str, hymenoptera: Path) -> None:
    image = Image.open(next((hymenoptera / "val" / "ants").glob("*.jpg"))).convert("RGB")
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    reference = timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=cfg))
    ours = get_spec(f"timm:{name}").transform()
    torch.testing.assert_close(ours(image), reference(image), atol=0, rtol=0)


def test_unknown_names_get_the_closest_timm_names(data: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InputError, match=r"timm has no model 'resnet19'; closest: resnet18\b"):
        TrainConfig(data=str(data), backbone="timm:resnet19").validate()
    with pytest.raises(InputError, match=r"no pretrained tag 'bogus'; known: .*resnet18\.a1_in1k"):
        get_spec("timm:resnet18.bogus")
    assert main(["train", "--data", str(data), "--backbone", "timm:resnet19"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "closest: resnet18" in err


def test_without_timm_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(MissingPackageError, match=re.escape("pip install 'qtransfer[timm]' (or pip install timm)")):
        get_spec(f"timm:{MODEL}")
