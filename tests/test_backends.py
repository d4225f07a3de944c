"""Backends run the same circuit description: built-in engine and PennyLane devices agree."""
from __future__ import annotations

import pytest
import torch

from qtransfer import (
    DressedQuantumHead,
    PennyLaneBackend,
    TorchBackend,
    get_backend,
    make_circuit,
)
from qtransfer.quantum.circuits import TEMPLATES


@pytest.mark.parametrize("template", sorted(TEMPLATES), ids=str)
@pytest.mark.parametrize(
    "backend",
    [
        PennyLaneBackend("default.qubit"),
        PennyLaneBackend("default.qubit", per_sample=True),
        PennyLaneBackend("lightning.qubit", diff_method="adjoint"),
    ],
    ids=["default.qubit", "default.qubit-per-sample", "lightning.qubit-adjoint"],
)
def test_pennylane_backends_equal_the_engine(template: str, backend: PennyLaneBackend) -> None:
    circuit = make_circuit(template, 4, 2)
    x = (torch.rand(5, 4, dtype=torch.float64) * 3).requires_grad_()
    w = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    results = []
    for run in (TorchBackend(), backend):
        out = run(circuit, x, w)
        results.append((out, torch.autograd.grad(out.pow(2).sum(), [x, w])))
    (ours, our_grads), (theirs, their_grads) = results
    assert theirs.shape == (5, 4)
    # lightning.qubit's torch interface hands back float32 results (PennyLane 0.45), hence its tolerance
    tol = 1e-6 if backend.device_name.startswith("lightning") else 1e-10
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=0)
    for a, b in zip(our_grads, their_grads):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_torch_backend_follows_the_weights_precision() -> None:
    circuit = make_circuit("tutorial", 3, 1)
    backend = TorchBackend()
    assert backend(circuit, torch.rand(2, 3), torch.rand(3)).dtype == torch.float32
    assert backend(circuit, torch.rand(2, 3).double(), torch.rand(3).double()).dtype == torch.float64


def test_a_head_runs_on_a_pennylane_device_by_name() -> None:
    torch.manual_seed(0)
    head = DressedQuantumHead(8, 2, backend="pennylane:default.qubit")
    features = torch.randn(3, 8)
    engine_head = DressedQuantumHead(8, 2)
    engine_head.load_state_dict(head.state_dict())
    torch.testing.assert_close(head(features), engine_head(features), atol=1e-5, rtol=0)


def test_unknown_backend_and_missing_device_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="pennylane:<device>"):
        get_backend("qiskit")
    backend = get_backend("pennylane:braket.local.qubit")  # a plugin the dev install does not include
    with pytest.raises(ValueError, match="pip install amazon-braket-pennylane-plugin"):
        backend(make_circuit("tutorial", 2, 1), torch.rand(1, 2), torch.rand(2))


@pytest.mark.slow
@pytest.mark.subprocess
def test_pennylane_is_imported_only_when_used() -> None:
    import subprocess
    import sys

    code = "import sys, qtransfer; qtransfer.DressedQuantumHead(8, 2); print('pennylane' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
