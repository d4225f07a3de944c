"""qtransfer: hybrid classical-quantum transfer learning with a fast batched circuit engine.

The names below load their module on first use, so `import qtransfer` (and `qtransfer --help`) stays fast:
torch, torchvision, matplotlib, scipy and PennyLane are imported only by the features that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "BACKBONES": "models.backbones", "Backbone": "models.backbones", "create_backbone": "models.backbones",
    "register_backbone": "models.backbones",
    "HEADS": "models.heads", "DressedClassicalHead": "models.heads", "DressedQuantumHead": "models.heads",
    "LinearHead": "models.heads", "build_head": "models.heads", "create_head": "models.heads",
    "register_head": "models.heads",
    "LogisticRegressionHead": "models.baselines", "MLPHead": "models.baselines", "SVMHead": "models.baselines",
    "FittedHead": "models.fitted", "Reduction": "models.reduction",
    "PennyLaneBackend": "quantum.backends", "TorchBackend": "quantum.backends", "get_backend": "quantum.backends",
    "TEMPLATES": "quantum.circuits", "Circuit": "quantum.circuits", "Gate": "quantum.circuits",
    "Observable": "quantum.circuits", "Param": "quantum.circuits", "const": "quantum.circuits",
    "inp": "quantum.circuits", "make_circuit": "quantum.circuits", "register_template": "quantum.circuits",
    "weight": "quantum.circuits",
    "CompiledCircuit": "quantum.statevector", "simulate": "quantum.statevector",
    "TrainConfig": "config",
    "QTransferError": "errors",
    "ImageFolderDataset": "data.images", "load_splits": "data.images",
    "download_dataset": "data.download", "get_dataset": "data.download", "reference_transform": "data.transforms",
    "extract_dataset": "features.pipeline", "load_features": "features.pipeline",
    "train": "training.run", "TrainedModel": "training.trained",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'qtransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"qtransfer.{_API[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

