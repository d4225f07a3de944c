"""Predict with a `qtransfer export` without qtransfer: only the sidecar JSON, PIL, numpy and torch, onnxruntime or
qiskit. Run as `python deployed_client.py SIDECAR IMAGE...`; prints {"probabilities": [[...], ...], ...} as JSON.
The tests run it in a fresh process and check that qtransfer was never imported."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def preprocess(path: str, p: dict) -> np.ndarray:
    """One image as float32 (3, crop, crop), by the sidecar's `preprocessing`."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if p["square"]:
        size = (p["resize"], p["resize"])
    elif w <= h:
        size = (p["resize"], int(p["resize"] * h / w))
    else:
        size = (int(p["resize"] * w / h), p["resize"])
    image = image.resize(size, {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[p["interpolation"]])
    top, left = round((size[1] - p["crop"]) / 2), round((size[0] - p["crop"]) / 2)
    image = image.crop((left, top, left + p["crop"], top + p["crop"]))
    x = np.asarray(image, dtype=np.float32) / 255
    x = (x - np.array(p["mean"], dtype=np.float32)) / np.array(p["std"], dtype=np.float32)
    return x.transpose(2, 0, 1)


def expectations_by_qiskit(qasm: str, angles: np.ndarray, observables: list[str]) -> np.ndarray:
    """<Z_i> of the OpenQASM 3 circuit for each row of angles (bound to inputs x0, x1, ...), by Qiskit."""
    from qiskit import qasm3
    from qiskit.quantum_info import Statevector

    circuit = qasm3.loads(qasm)
    by_name = {p.name: p for p in circuit.parameters}
    rows = []
    for a in angles:
        bound = circuit.assign_parameters({by_name[f"x{i}"]: float(v) for i, v in enumerate(a)})
        state = Statevector(bound)
        row = []
        for o in observables:  # "Z0" or a product such as "Z0Z2"
            qubits = [int(q) for q in o.split("Z")[1:]]
            probs = state.probabilities(qubits)  # little-endian over `qubits`: parity = popcount of the index
            row.append(sum(pr * (-1) ** bin(k).count("1") for k, pr in enumerate(probs)))
        rows.append(row)
    return np.array(rows)


def predict(sidecar_path: Path, images: list[str]) -> dict:
    side = json.loads(sidecar_path.read_text())
    folder = sidecar_path.parent
    x = np.stack([preprocess(p, side["preprocessing"]) for p in images]).astype(np.float32)
    fmt = side["export_format"]
    out: dict = {"format": fmt}
    if fmt == "torchscript":
        import torch

        model = torch.jit.load(str(folder / side["files"]["model"]))
        with torch.no_grad():
            probs = model(torch.from_numpy(x)).numpy()
    elif fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / side["files"]["model"]), providers=["CPUExecutionProvider"])
        probs = session.run(["probabilities"], {"images": x})[0]
    else:
        import torch

        classical = torch.jit.load(str(folder / side["files"]["classical"]))
        with torch.no_grad():
            angles = classical(torch.from_numpy(x)).double().numpy()
        qasm = (folder / side["files"]["model"]).read_text()
        expectations = expectations_by_qiskit(qasm, angles, side["circuit"]["observables"])
        with torch.no_grad():
            probs = classical.readout(torch.from_numpy(expectations)).numpy()
        out.update(angles=angles.tolist(), expectations=expectations.tolist())
    out["probabilities"] = np.asarray(probs, dtype=float).tolist()
    out["qtransfer_imported"] = any(m == "qtransfer" or m.startswith("qtransfer.") for m in sys.modules)
    return out


if __name__ == "__main__":
    print(json.dumps(predict(Path(sys.argv[1]), sys.argv[2:])))
