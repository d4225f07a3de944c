"""timm's image models as network A: names checked against timm, preprocessing from timm's data config, default
weights found where timm caches them (qtransfer never downloads them)."""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from torch import nn
from torchvision.transforms import InterpolationMode

from qtransfer import hub
from qtransfer.errors import InputError, MissingPackageError, WeightsUnavailable

PREFIX = "timm:"

# timm prefers a safetensors file beside a pickled one of the same repository (timm.models._hub).
SAFE_ALTERNATIVES = {"pytorch_model.bin": "model.safetensors",
                     "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


def import_timm() -> ModuleType:
    """The timm package, or MissingPackageError naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise MissingPackageError(
            "--backbone timm:<model> needs timm: pip install 'qtransfer[timm]' (or pip install timm)") from None
    return timm


def check_name(model: str) -> None:
    """InputError unless timm has the architecture (and pretrained tag) `model`; names the closest ones."""
    timm = import_timm()
    if not model:
        raise InputError("--backbone timm: needs a model name after the colon, e.g. timm:resnet18 "
                         "(python -c 'import timm; print(timm.list_models())' lists them)")
    arch, _, tag = model.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else "timm.list_models() lists them"
        raise InputError(f"timm has no model {arch!r}; {hint}")
    if tag and model not in timm.list_pretrained(f"{arch}.*"):
        known = timm.list_pretrained(f"{arch}.*")
        raise InputError(f"timm's {arch} has no pretrained tag {tag!r}; known: {', '.join(known) or 'none'}")


def pretrained_cfg(model: str) -> dict[str, Any]:
    """timm's metadata of the model's (default or tagged) pretrained weights: source, preprocessing, classifier."""
    check_name(model)
    cfg = import_timm().models.get_pretrained_cfg(model)
    return cfg.to_dict() if cfg is not None else {}


def preprocessing(model: str) -> dict[str, Any]:
    """The resize, crop, mean, std, interpolation and squash of timm's evaluation transform for `model`."""
    timm = import_timm()
    data = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg(model))
    _, height, width = data["input_size"]
    mode = data.get("crop_mode") or "center"
    if height != width or mode not in ("center", "squash"):
        raise InputError(f"timm model {model} is preprocessed to {height}x{width} with crop mode {mode!r}; qtransfer "
                         "reproduces only square inputs cropped 'center' or 'squash': choose another model")
    return {
        "resize": math.floor(height / (data.get("crop_pct") or 0.875)),
        "crop": height,
        "mean": tuple(data["mean"]),
        "std": tuple(data["std"]),
        "interpolation": InterpolationMode(data["interpolation"]),
        "squash": mode == "squash",
    }


def build(model: str) -> nn.Module:
    """The timm model with random weights and no classifier: its output is the pooled pre-logits features."""
    return import_timm().create_model(model, pretrained=False, num_classes=0)


def feature_width(model: nn.Module) -> int:
    """Width of a classifier-less timm model's output (after its pre-logits layer, where it has one)."""
    width = getattr(model, "head_hidden_size", None) or model.num_features
    if not isinstance(width, int):
        raise TypeError(f"timm model {type(model).__name__} gives no integer feature width ({width!r})")
    return width


def classifier_keys(model: str) -> tuple[str, ...]:
    """Names of the classifier modules whose weights a classifier-less model has no place for."""
    classifier = pretrained_cfg(model).get("classifier") or "fc"
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def cached_weights(model: str) -> Path:
    """The model's pretrained weights where timm caches them (the Hugging Face cache, else torch's checkpoints
    folder); WeightsUnavailable, saying which file to put where, when neither holds them."""
    cfg = pretrained_cfg(model)
    places = []  # (url, path) of each place timm would read the weights from
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg["hf_hub_id"].partition("@")
        files = _hf_files(cfg.get("hf_hub_filename"))
        for name in files:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
        url = f"https://huggingface.co/{repo}/resolve/{revision or 'main'}/{files[0]}"
        places.append((url, _hf_snapshot(repo, revision or "main") / files[0]))
    if cfg.get("url") and not cfg.get("custom_load"):
        target = hub.checkpoint_dir() / Path(urlparse(cfg["url"]).path).name
        if target.is_file():
            return target
        places.append((cfg["url"], target))
    if not places:
        raise WeightsUnavailable(f"timm has no pretrained weights for {model}: pass --weights FILE (a state dict) "
                                 "or --weights none")
    where = "; or ".join(f"put {url} at {path}" for url, path in places)
    fetch = f"python -c \"import timm; timm.create_model('{model}', pretrained=True)\""
    raise WeightsUnavailable(f"the weights of timm:{model} are not cached on this machine and qtransfer does not "
                             f"download them: {where}; or pass that file as --weights FILE; or let timm cache them "
                             f"while online: {fetch}")


def _hf_snapshot(repo: str, revision: str) -> Path:
    """The folder of the Hugging Face cache where `try_to_load_from_cache` looks for the repository's files."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / revision
    return folder / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)


def _hf_files(filename: str | None) -> list[str]:
    """The files timm reads from a Hugging Face repository, in its order: a safetensors alternative first."""
    name = filename or "pytorch_model.bin"
    if not name.endswith(".bin"):
        return [name]
    return [SAFE_ALTERNATIVES.get(name, name.removesuffix(".bin") + ".safetensors"), name]
