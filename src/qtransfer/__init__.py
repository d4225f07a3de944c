"""qtransfer: hybrid classical-quantum transfer learning with a fast batched circuit engine."""
from .backbones import BACKBONES, Backbone, create_backbone, register_backbone
from .backends import PennyLaneBackend, TorchBackend, get_backend
from .circuits import (
    TEMPLATES,
    Circuit,
    Gate,
    Observable,
    Param,
    const,
    inp,
    make_circuit,
    register_template,
    weight,
)
from .config import TrainConfig
from .data import ImageFolderDataset, download_dataset, load_splits, reference_transform
from .engine import CompiledCircuit, simulate
from .extraction import extract_dataset
from .heads import (
    HEADS,
    DressedClassicalHead,
    DressedQuantumHead,
    LinearHead,
    create_head,
    register_head,
)
from .train import TrainedModel, train

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "HEADS",
    "TEMPLATES",
    "Backbone",
    "Circuit",
    "CompiledCircuit",
    "DressedClassicalHead",
    "DressedQuantumHead",
    "Gate",
    "ImageFolderDataset",
    "LinearHead",
    "Observable",
    "Param",
    "PennyLaneBackend",
    "TorchBackend",
    "TrainConfig",
    "TrainedModel",
    "const",
    "create_backbone",
    "create_head",
    "download_dataset",
    "extract_dataset",
    "get_backend",
    "inp",
    "load_splits",
    "make_circuit",
    "reference_transform",
    "register_backbone",
    "register_head",
    "register_template",
    "simulate",
    "train",
    "weight",
]
