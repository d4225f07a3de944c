"""The JSON beside an exported model: what a user with only torch or onnxruntime and PIL needs to predict with
it (image preprocessing, classes, what goes in and comes out), and where it came from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qtransfer import __version__

SIDECAR_VERSION = 1  # qtransfer writes these files and never reads them back

PREPROCESSING_STEPS = (
    "1. open the image and convert it to 8-bit RGB; "
    "2. resize with `interpolation` so that the shorter side is `resize` pixels (the longer side: int(resize * long "
    "/ short)), or to resize x resize when `square`; "
    "3. crop crop x crop from the centre (top = round((height - crop) / 2), left likewise); "
    "4. scale pixels to [0, 1] (divide by 255), subtract `mean` and divide by `std` per channel; "
    "5. stack as float32 of shape (N, 3, crop, crop), channels first"
)


def preprocessing(backbone: Any) -> dict[str, Any]:
    """The image preprocessing of a backbone's spec, as plain values."""
    spec = backbone.spec
    return {
        "resize": spec.resize, "square": spec.squash, "crop": spec.crop,
        "interpolation": str(spec.interpolation.value), "mean": list(spec.mean), "std": list(spec.std),
        "input_shape": ["N", 3, spec.crop, spec.crop], "steps": PREPROCESSING_STEPS,
    }


def head_description(config: Any) -> dict[str, Any]:
    """The head's name and the settings that shape it."""
    out: dict[str, Any] = {"name": config.head}
    if config.head in ("quantum", "qkernel", "projected_qkernel"):
        out.update(template=config.template, n_qubits=config.n_qubits)
    if config.head == "quantum":
        out.update(depth=config.depth)
    if config.head == "classical":
        out.update(width=config.n_qubits)
    if config.pca:
        out.update(pca=config.pca)
    return out


def sidecar(fmt: str, files: dict[str, str], model: Any, run_dir: Path | None, note: str | None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar's content for `model` (a TrainedModel) exported as `fmt` into `files` (role -> file name)."""
    config = model.config
    doc: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "export_format": fmt,
        "files": files,
        "qtransfer_version": __version__,
        "run": str(run_dir) if run_dir else None,
        "classes": list(model.classes),
        "backbone": {"name": config.backbone, "weights_sha256": model.backbone.weights_id},
        "head": head_description(config),
        "preprocessing": preprocessing(model.backbone),
        "output": "class probabilities (N, classes), float32, in the order of `classes` (softmax of the logits)",
    }
    if note:
        doc["exactness"] = note
    doc.update(extra or {})
    return doc
