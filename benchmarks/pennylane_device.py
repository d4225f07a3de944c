#!/usr/bin/env python
"""qtransfer.qubit / qtransfer.mixed as PennyLane devices, against default.qubit, lightning.qubit, default.mixed.

    python benchmarks/pennylane_device.py --threads 1 --out pennylane_device.json

(a) The tutorial's own training loop (its QNode called once per sample inside DressedQuantumNet, Adam on the
    dressed head, batch 4) for one epoch of 244 feature vectors (seeded random 512-d features in place of
    ResNet18's: the circuit's cost does not depend on their values), with only the device name changed.
(b) The tutorial's circuit (depth 6) as a TorchLayer fed a broadcast batch of 32, forward + backward, at
    4..20 qubits: qtransfer.qubit with backprop and with adjoint (device VJP), default.qubit backprop,
    lightning.qubit adjoint, and the engine called directly (CompiledCircuit) -- the difference to
    qtransfer.qubit backprop is PennyLane's overhead per tape. Peers slower than --budget seconds are timed
    on fewer samples and scaled linearly to 32 (recorded as "scaled_from").
(c) Noise: the same circuit at 8 qubits with a depolarizing channel (p = 0.01) after every gate, batch 32
    broadcast, forward + backward with backprop: qtransfer.mixed against default.mixed.
All times in one process, float64 everywhere; ratios are peer time / qtransfer time.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from timing import best_of, emit, logged

DEPTH = 6


def tutorial_qnode_body(n: int, noise: float = 0.0):
    import pennylane as qml

    def circuit(inputs, weights):
        for i in range(n):
            qml.Hadamard(wires=i)
            if noise:
                qml.DepolarizingChannel(noise, wires=i)
            qml.RY(inputs[..., i], wires=i)
            if noise:
                qml.DepolarizingChannel(noise, wires=i)
        for k in range(DEPTH):
            for i in list(range(0, n - 1, 2)) + list(range(1, n - 1, 2)):
                qml.CNOT(wires=[i, i + 1])
                if noise:
                    qml.DepolarizingChannel(noise, wires=i)
                    qml.DepolarizingChannel(noise, wires=i + 1)
            for i in range(n):
                qml.RY(weights[k, i], wires=i)
                if noise:
                    qml.DepolarizingChannel(noise, wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return circuit


def tutorial_epoch(device_name: str, samples: int = 244) -> float:
    """One epoch of the tutorial's loop (per-sample QNode calls), seconds."""
    import pennylane as qml
    from torch import nn

    n_qubits, q_delta = 4, 0.01
    dev = qml.device(device_name, wires=n_qubits)
    body = tutorial_qnode_body(n_qubits)
    quantum_net = qml.QNode(lambda x, w: body(x, w.reshape(DEPTH, n_qubits)), dev, interface="torch")

    class DressedQuantumNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre_net = nn.Linear(512, n_qubits)
            self.q_params = nn.Parameter(q_delta * torch.randn(DEPTH * n_qubits))
            self.post_net = nn.Linear(n_qubits, 2)

        def forward(self, input_features):
            q_in = torch.tanh(self.pre_net(input_features)) * np.pi / 2.0
            q_out = torch.Tensor(0, n_qubits)
            for elem in q_in:
                q_out_elem = torch.hstack(quantum_net(elem, self.q_params)).float().unsqueeze(0)
                q_out = torch.cat((q_out, q_out_elem))
            return self.post_net(q_out)

    torch.manual_seed(42)
    model = DressedQuantumNet()
    g = torch.Generator().manual_seed(1)
    features, labels = torch.randn(samples, 512, generator=g), torch.randint(0, 2, (samples,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=0.0004)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i in range(0, samples, 4):
        opt.zero_grad()
        loss = loss_fn(model(features[i : i + 4]), labels[i : i + 4])
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def torchlayer_time(device_name: str, n: int, batch: int, diff_method: str, repeats: int, **qnode_kwargs) -> float:
    """Forward + backward of a TorchLayer on a broadcast batch, seconds (best of `repeats`)."""
    import pennylane as qml

    dev = qml.device(device_name, wires=n)
    node = qml.QNode(tutorial_qnode_body(n, qnode_kwargs.pop("noise", 0.0)), dev, interface="torch",
                     diff_method=diff_method, **qnode_kwargs)
    layer = qml.qnn.TorchLayer(node, {"weights": (DEPTH, n)}).double()
    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(batch, n, generator=g, dtype=torch.float64) - 0.5) * 3).requires_grad_()

    def step():
        layer.zero_grad()
        layer(x).sum().backward()

    return best_of(step, repeats, warm_up=repeats > 1)


def engine_time(n: int, batch: int, repeats: int) -> float:
    """The same forward + backward on the engine directly (no PennyLane)."""
    from qtransfer import make_circuit
    from qtransfer.quantum.statevector import CompiledCircuit

    sim = CompiledCircuit(make_circuit("tutorial", n, DEPTH), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(batch, n, generator=g, dtype=torch.float64) - 0.5) * 3).requires_grad_()
    w = (torch.randn(DEPTH * n, generator=g, dtype=torch.float64) * 0.1).requires_grad_()

    def step():
        sim(x, w).sum().backward()

    return best_of(step, repeats, warm_up=repeats > 1)


def scaled(fn, batch: int, budget: float, probe: int) -> tuple[float, int]:
    """fn(batch) seconds, or fn(probe) scaled to `batch` when fn(probe) says the full batch exceeds the budget."""
    t = fn(probe)
    if t * batch / probe <= budget and probe < batch:
        return fn(batch), batch
    return t * batch / probe, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 12, 16, 20])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds a peer may take per point")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import pennylane as qml

    result: dict = {"threads": args.threads, "platform": platform.platform(), "torch": torch.__version__,
                    "pennylane": qml.__version__, "load_average": os.getloadavg(), "batch": args.batch, "depth": DEPTH}
    if not args.skip_epoch:
        epoch = {name: tutorial_epoch(name) for name in ("qtransfer.qubit", "default.qubit", "lightning.qubit")}
        result["tutorial_epoch"] = logged({
            "seconds": epoch,
            "default_qubit_over_qtransfer": epoch["default.qubit"] / epoch["qtransfer.qubit"],
            "lightning_qubit_over_qtransfer": epoch["lightning.qubit"] / epoch["qtransfer.qubit"],
        })
    points = []
    b = args.batch
    for n in args.qubits:
        reps = 3 if n <= 12 else 1
        point: dict = {"n_qubits": n}
        point["engine"] = engine_time(n, b, reps)
        point["qtransfer_backprop"] = torchlayer_time("qtransfer.qubit", n, b, "backprop", reps)
        point["qtransfer_adjoint"] = torchlayer_time("qtransfer.qubit", n, b, "adjoint", reps, device_vjp=True)
        if n <= 16:
            point["default_qubit_backprop"], point["default_scaled_from"] = scaled(
                lambda k, n=n, reps=reps: torchlayer_time("default.qubit", n, k, "backprop", reps), b, args.budget,
                min(b, 4))
        point["lightning_adjoint"], point["lightning_scaled_from"] = scaled(
            lambda k, n=n, reps=reps: torchlayer_time("lightning.qubit", n, k, "adjoint", reps), b, args.budget,
            min(b, 2))
        q = point["qtransfer_backprop"]
        point["pennylane_overhead_per_tape_s"] = q - point["engine"]
        point["lightning_over_qtransfer_adjoint"] = point["lightning_adjoint"] / point["qtransfer_adjoint"]
        point["lightning_over_qtransfer_backprop"] = point["lightning_adjoint"] / q
        if "default_qubit_backprop" in point:
            point["default_over_qtransfer_backprop"] = point["default_qubit_backprop"] / q
        points.append(logged(point))
    result["torchlayer"] = points
    noisy: dict = {"n_qubits": 8, "p": 0.01}
    noisy["qtransfer_mixed"] = torchlayer_time("qtransfer.mixed", 8, b, "backprop", 3, noise=0.01)
    noisy["default_mixed"], noisy["default_mixed_scaled_from"] = scaled(
        lambda k: torchlayer_time("default.mixed", 8, k, "backprop", 1, noise=0.01), b, args.budget, min(b, 2))
    noisy["default_mixed_over_qtransfer_mixed"] = noisy["default_mixed"] / noisy["qtransfer_mixed"]
    result["noisy"] = logged(noisy)
    result["load_average_after"] = os.getloadavg()
    emit(result, args.out)


if __name__ == "__main__":
    main()
