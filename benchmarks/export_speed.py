#!/usr/bin/env python
"""Inference speed of an exported circuit: the frozen circuit (plain tensor ops, as exported) traced by TorchScript
and run by ONNX Runtime, against the engine's forward without gradients, on the same inputs, in one process.

    python benchmarks/export_speed.py [--qubits 4 8] [--depth 6] [--batch 256] [--out export_speed.json]

Times are best of 5 after a warm-up, one torch thread; ratios are engine seconds / export seconds (> 1: the export
is faster). The largest difference of an expectation value from the engine's (float64) is reported beside.
"""
from __future__ import annotations

import argparse
import io

import torch
from timing import best_of, emit, logged

from qtransfer.quantum.circuits import make_circuit
from qtransfer.quantum.frozen import FrozenCircuit
from qtransfer.quantum.statevector import CompiledCircuit


def measure(n: int, depth: int, batch: int, template: str) -> dict:
    import onnxruntime

    circuit = make_circuit(template, n, depth)
    weights = 0.5 * torch.randn(circuit.n_weights, generator=torch.Generator().manual_seed(0))
    x = torch.randn(batch, circuit.n_inputs, generator=torch.Generator().manual_seed(1))
    engine = CompiledCircuit(circuit, dtype=torch.float32)
    frozen = FrozenCircuit(circuit, weights)
    with torch.no_grad():
        traced = torch.jit.trace(frozen, x[:2])
        buffer = io.BytesIO()
        torch.onnx.export(frozen, (x[:2],), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        exact = CompiledCircuit(circuit, dtype=torch.float64)(x.double(), weights.double())
        seconds = {
            "engine": best_of(lambda: engine(x, weights), 5),
            "frozen_eager": best_of(lambda: frozen(x), 5),
            "torchscript": best_of(lambda: traced(x), 5),
            "onnxruntime": best_of(lambda: session.run(["y"], {"x": x.numpy()}), 5),
        }
        error = float((torch.from_numpy(session.run(["y"], {"x": x.numpy()})[0]).double() - exact).abs().max())
    return logged({"template": template, "n_qubits": n, "depth": depth, "batch": batch, "seconds": seconds,
                   "engine_over": {k: seconds["engine"] / v for k, v in seconds.items() if k != "engine"},
                   "onnx_max_error": error})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--templates", nargs="+", default=["tutorial", "strongly_entangling"])
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    points = [measure(n, args.depth, args.batch, t) for t in args.templates for n in args.qubits]
    emit({"points": points}, args.out)


if __name__ == "__main__":
    main()
