"""`qtransfer export`: a trained run as one TorchScript or ONNX file (backbone + head, image in, probabilities out),
or as OpenQASM 3 (the circuit with its trained weights) with its classical layers as TorchScript beside it; each
with a sidecar JSON. Every file is checked against the run's own model before it is written."""
from __future__ import annotations

import importlib.util
import io
import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qtransfer.errors import InputError, MissingPackageError
from qtransfer.export.plain import FrozenDressedHead, PlainModel, exactness, plain_model
from qtransfer.export.sidecar import sidecar
from qtransfer.models.backbones import Backbone
from qtransfer.models.heads import DressedQuantumHead
from qtransfer.quantum.qasm import input_name, to_openqasm3
from qtransfer.storage import atomic_write, atomic_write_text
from qtransfer.training.trained import TrainedModel

FORMATS = ("torchscript", "onnx", "qasm")
TOLERANCE = 1e-5  # largest difference of a probability allowed between an export and the run's model
ONNX_OPSET = 17
CHECK_IMAGES = 3  # random images each export is checked on (a batch size other than the traced one)


class ClassicalParts(nn.Module):
    """The classical layers around a circuit: images -> circuit input angles (forward), and expectation values ->
    class probabilities (readout)."""

    def __init__(self, backbone: nn.Module, head: FrozenDressedHead):
        super().__init__()
        self.backbone = backbone
        self.pre_net = head.pre_net
        self.post_net = head.post_net

    def forward(self, images: Tensor) -> Tensor:
        return torch.tanh(self.pre_net(self.backbone(images))) * (math.pi / 2)

    def readout(self, expectations: Tensor) -> Tensor:
        """Class probabilities from the circuit's expectation values (N, n_outputs)."""
        return self.post_net(expectations.to(self.post_net.weight.dtype)).float().softmax(1)


def export_run(run_dir: Path, fmt: str, out: Path, progress: bool = True) -> dict[str, Any]:
    """Export the best model of a run directory; returns the sidecar written beside it."""
    check_destination(fmt, Path(out))
    return export_model(TrainedModel.load(run_dir, device="cpu", progress=progress), fmt, out)


def sidecar_path(out: Path) -> Path:
    """Where the sidecar of an export to `out` goes: `out` with the suffix .json."""
    return Path(out).with_suffix(".json")


def check_destination(fmt: str, out: Path) -> None:
    """Refuse an unknown format, or an --out that is the sidecar's name or in a folder that does not exist."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if out.suffix == ".json":
        raise InputError(f"--out {out} ends in .json, the name of the sidecar written beside the model: name the "
                         "model file e.g. model.pt, model.onnx or model.qasm")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist; create it or choose another --out")


def export_model(model: TrainedModel, fmt: str, out: Path) -> dict[str, Any]:
    """Write `model` as `fmt` to `out` and its sidecar to out.json (for qasm also out.classical.pt)."""
    out = Path(out)
    check_destination(fmt, out)
    if fmt == "qasm" and not isinstance(model.head, DressedQuantumHead):
        raise InputError(f"--format qasm writes a trained circuit; head {model.config.head!r} has none (its "
                         "circuit, if any, has no trained weights): use --format torchscript or onnx")
    note = exactness(model.config)
    with _quiet_torch():
        return _export(model, fmt, out, note)


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """No gradients, and none of torch's warnings about tracing (deprecation, constant shapes) that the checks of
    every export make moot."""
    with torch.no_grad(), warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):  # TorchScript's and the legacy ONNX exporter's
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _export(model: TrainedModel, fmt: str, out: Path, note: str | None) -> dict[str, Any]:
    plain = plain_model(model.backbone, model.head).requires_grad_(False)
    if not isinstance(model.backbone, Backbone):
        raise TypeError(f"an export needs a qtransfer Backbone (it reads its crop): {type(model.backbone).__name__}")
    crop = model.backbone.spec.crop
    example = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    check = torch.randn(CHECK_IMAGES, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    # with shots the run's own probabilities are random draws: the export is checked against their exact model
    reference = model.simulated(shots=0, device_options="") if note else model
    expected = reference.probabilities(check)
    files = {"model": out.name}
    extra: dict[str, Any] = {}
    if fmt == "torchscript":
        traced = _trace(plain, example)
        _agree(traced(check), expected, "TorchScript")
        _write_torchscript(traced, out)
        extra["usage"] = "torch.jit.load(model)(images) -> probabilities"
    elif fmt == "onnx":
        data = _onnx_bytes(plain, example)
        _agree(_run_onnx(data, check), expected, "ONNX")
        _write_bytes(out, data)
        extra["usage"] = ("onnxruntime.InferenceSession(model).run(['probabilities'], {'images': images})[0]; "
                          "images float32 (N, 3, crop, crop)")
    else:
        files["classical"], extra = _export_qasm(model, plain, example, check, expected, out)
    doc = sidecar(fmt, files, model, model.run_dir, note, extra)
    atomic_write_text(sidecar_path(out), json.dumps(doc, indent=2) + "\n")
    return doc


def _trace(module: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    return torch.jit.trace(module, example, check_trace=False)


def _agree(got: Tensor, expected: Tensor, what: str) -> None:
    """Refuse to write an export whose probabilities differ from the run's model (a bug: say so)."""
    diff = float((got.float() - expected.float()).abs().max())
    if not diff <= TOLERANCE:
        raise RuntimeError(f"the {what} export's probabilities differ from the run's model by {diff:.3g} (more than "
                           f"{TOLERANCE}); nothing was written")


def _write_bytes(out: Path, data: bytes) -> None:
    def write(f: io.BufferedWriter) -> None:
        f.write(data)

    atomic_write(out, write)


def _write_torchscript(module: torch.jit.ScriptModule, out: Path) -> None:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    _write_bytes(out, buffer.getvalue())


def _onnx_bytes(plain: nn.Module, example: Tensor) -> bytes:
    if importlib.util.find_spec("onnx") is None:
        raise MissingPackageError("ONNX export needs onnx and onnxruntime: pip install 'qtransfer[export]'")
    buffer = io.BytesIO()
    # the TorchScript-based exporter (dynamo=False) writes to a file object too; torch annotates only paths
    torch.onnx.export(plain, (example,), buffer,  # type: ignore[arg-type]
                      input_names=["images"], output_names=["probabilities"],
                      dynamic_axes={"images": {0: "N"}, "probabilities": {0: "N"}}, opset_version=ONNX_OPSET,
                      dynamo=False)
    return buffer.getvalue()


def _run_onnx(data: bytes, images: Tensor) -> Tensor:
    if importlib.util.find_spec("onnxruntime") is None:
        raise MissingPackageError("checking an ONNX export needs onnxruntime: pip install 'qtransfer[export]'")
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["probabilities"], {"images": images.numpy()})[0])


def _export_qasm(model: TrainedModel, plain: PlainModel, example: Tensor, check: Tensor, expected: Tensor,
                 out: Path) -> tuple[str, dict[str, Any]]:
    head, frozen = model.head, plain.head
    if not isinstance(head, DressedQuantumHead) or not isinstance(frozen, FrozenDressedHead):
        raise TypeError(f"only a dressed quantum head has a trained circuit to write, not {type(head).__name__}")
    circuit = head.circuit
    parts = ClassicalParts(plain.backbone, frozen).eval()
    traced = torch.jit.trace_module(parts, {"forward": example, "readout": torch.zeros(2, circuit.n_outputs)},
                                    check_trace=False)
    got = traced.readout(frozen.circuit(traced(check)))
    _agree(got, expected, "classical layers of the QASM")
    text = to_openqasm3(circuit, head.q_params.detach().cpu().double().numpy())
    classical = out.with_suffix(".classical.pt")
    _write_torchscript(traced, classical)
    atomic_write_text(out, text)
    observables = ["".join(f"{p}{w}" for p, w in zip(o.paulis, o.wires)) for o in circuit.observables]
    extra = {"usage": (
        "angles = torch.jit.load(classical)(images); for each sample bind angles[:, i] to the circuit's input "
        f"{input_name(0)}..{input_name(circuit.n_inputs - 1)}, measure the observables (Z0 = Pauli Z on qubit q[0]) "
        "and give their expectation values (N, n_observables) to torch.jit.load(classical).readout(...) -> "
        "probabilities"),
        "circuit": {"template": circuit.name, "n_qubits": circuit.n_qubits,
                    "inputs": [input_name(i) for i in range(circuit.n_inputs)], "observables": observables,
                    "language": "OpenQASM 3, written by qiskit.qasm3.dumps; input angles as `input float[64]`"}}
    return classical.name, extra
