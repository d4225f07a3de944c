"""qtransfer: hybrid classical-quantum transfer learning with a fast batched circuit engine."""
from .backends import PennyLaneBackend, TorchBackend, get_backend
from .circuits import TEMPLATES, Circuit, Gate, Observable, Param, const, inp, make_circuit, register_template, weight
from .engine import CompiledCircuit, simulate
from .heads import HEADS, DressedClassicalHead, DressedQuantumHead, LinearHead, create_head, register_head

__version__ = "0.1.0"

__all__ = [
    "Circuit",
    "CompiledCircuit",
    "DressedClassicalHead",
    "DressedQuantumHead",
    "Gate",
    "HEADS",
    "LinearHead",
    "Observable",
    "Param",
    "PennyLaneBackend",
    "TEMPLATES",
    "TorchBackend",
    "const",
    "create_head",
    "get_backend",
    "inp",
    "make_circuit",
    "register_head",
    "register_template",
    "simulate",
    "weight",
]
