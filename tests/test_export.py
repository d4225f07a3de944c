"""`qtransfer export`: a trained run as TorchScript, ONNX or OpenQASM 3 that runs without qtransfer and predicts what
`qtransfer predict` does; every circuit template and head as plain tensor ops."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from sklearn.datasets import make_classification

from qtransfer.cli import main
from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.export.plain import exactness, plain_head
from qtransfer.export.writers import export_model
from qtransfer.models.heads import create_head
from qtransfer.quantum.circuits import TEMPLATES, Circuit, Gate, Observable, const, inp, make_circuit, weight
from qtransfer.quantum.frozen import FrozenCircuit
from qtransfer.quantum.statevector import CompiledCircuit
from qtransfer.training.trained import TrainedModel

CLIENT = Path(__file__).parent / "support" / "deployed_client.py"

# Every gate of circuits.py, inputs on one- and two-wire gates, Rot mixing all three sources, non-Z observables.
EVERY_GATE = Circuit(3, 3, (3,), (
    Gate("H", (0,)), Gate("RX", (1,), (inp(0),)), Gate("CRZ", (0, 2), (inp(1),)),
    Gate("Rot", (2,), (inp(2), weight(0), const(0.3))), Gate("IsingYY", (0, 2), (weight(1),)),
    Gate("PhaseShift", (1,), (inp(0),)), Gate("S", (1,)), Gate("T", (0,)), Gate("IsingXX", (1, 2), (inp(2),)),
    Gate("SWAP", (0, 2)), Gate("CRY", (2, 1), (weight(2),)), Gate("Y", (0,)), Gate("X", (1,)), Gate("Z", (2,)),
    Gate("CNOT", (2, 0)), Gate("CZ", (0, 1)), Gate("RY", (0,), (inp(1),)), Gate("RZ", (1,), (const(-0.7),)),
    Gate("CRX", (1, 0), (inp(2),)), Gate("IsingZZ", (0, 1), (inp(0),)),
), (Observable("Z", (0,)), Observable("XY", (1, 2)), Observable("ZZ", (0, 2)), Observable("Y", (1,))))


CASES = [*((make_circuit(t, n, 2), 8) for t in sorted(TEMPLATES) for n in (1, 4)),
         (make_circuit("strongly_entangling", 5, 2), 0), (EVERY_GATE, 8), (EVERY_GATE, 0)]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("circuit", "fold"), CASES,
                         ids=[f"{c.name}-{c.n_qubits}-{'folded' if f else 'gates'}" for c, f in CASES])
def test_a_frozen_circuit_computes_the_engines_expectation_values(circuit: Circuit, fold: int) -> None:
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    inputs = 2 * torch.randn(7, circuit.n_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = CompiledCircuit(circuit, dtype=torch.float64, method="gates")(inputs, weights)
    frozen = FrozenCircuit(circuit, weights, dtype=torch.float64, fold_max_qubits=fold)
    torch.testing.assert_close(frozen(inputs), expected, atol=1e-12, rtol=0)
    traced = torch.jit.trace(frozen, inputs[:2])  # traced on 2 samples, run on 7
    torch.testing.assert_close(traced(inputs), expected, atol=1e-12, rtol=0)


@pytest.mark.slow
def test_a_frozen_circuit_exports_to_onnx_in_real_arithmetic() -> None:
    weights = torch.randn(EVERY_GATE.n_weights, generator=torch.Generator().manual_seed(3))
    inputs = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    frozen = FrozenCircuit(EVERY_GATE, weights)
    buffer = io.BytesIO()
    torch.onnx.export(frozen, (inputs[:2],), buffer, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    assert all(i.type == "tensor(float)" for i in session.get_inputs() + session.get_outputs())
    got = session.run(["y"], {"x": inputs.numpy()})[0]
    expected = CompiledCircuit(EVERY_GATE, dtype=torch.float64, method="gates")(inputs.double(), weights.double())
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-6)


HEADS = {
    "quantum": {"template": "strongly_entangling", "n_qubits": 3, "depth": 2},
    "classical": {}, "linear": {}, "logreg": {"pca": 4}, "svm": {}, "mlp": {},
    "qkernel": {"template": "iqp", "n_qubits": 3}, "projected_qkernel": {"template": "tutorial", "n_qubits": 3},
}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_traces_and_exports_to_onnx_with_its_own_outputs(name: str) -> None:
    x, y = make_classification(40, 10, n_informative=5, class_sep=2.0, random_state=0)
    features, labels = torch.from_numpy(x).float(), torch.from_numpy(y)
    options = {"n_qubits": 4, "depth": 2, "template": "tutorial", "pca": 0, **HEADS[name]}
    torch.manual_seed(0)
    head = create_head(name, 10, 2, **options).eval()
    if hasattr(head, "fit"):
        head.fit(features, labels, seed=0)
    else:
        with torch.no_grad():
            for p in head.parameters():
                p.add_(torch.randn_like(p))  # trained-looking weights, not the initial ones
    with torch.no_grad():
        expected = head(features).softmax(1)
        plain = plain_head(head)
        traced = torch.jit.trace(plain, features[:2])
        torch.testing.assert_close(traced(features).softmax(1), expected, atol=1e-5, rtol=0)
        buffer = io.BytesIO()
        torch.onnx.export(plain, (features[:2],), buffer, input_names=["f"], output_names=["logits"],
                          dynamic_axes={"f": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"f": features.numpy()})[0]).softmax(1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_noise_is_refused_and_shots_are_exported_as_their_exact_expectation_values() -> None:
    with pytest.raises(InputError, match=r"noise.*Export a run trained without noise"):
        exactness(TrainConfig(noise="depolarizing=0.01"))
    with pytest.raises(InputError, match="noise model 'FakeManilaV2'"):
        exactness(TrainConfig(backend="pennylane:qiskit.aer", device_options='{"noise_model": "FakeManilaV2"}'))
    assert "exact values those shots estimate" in exactness(TrainConfig(shots=100))
    assert exactness(TrainConfig()) is None
    assert exactness(TrainConfig(head="linear", shots=100)) is None


def test_refusals_and_a_shots_run_exported_as_the_exact_model_its_shots_estimate(finished_run, tmp_path: Path) -> None:
    model = TrainedModel.load(finished_run[0], device="cpu", progress=False)
    linear = TrainedModel(TrainConfig(head="linear"), model.backbone, create_head("linear", 1280, 2), model.classes,
                          model.device)
    with pytest.raises(InputError, match=r"head 'linear' has none.*use --format torchscript or onnx"):
        export_model(linear, "qasm", tmp_path / "m.qasm")
    with pytest.raises(InputError, match=re.escape("ends in .json")):
        export_model(model, "onnx", tmp_path / "m.json")
    with pytest.raises(InputError, match="unknown export format 'tflite'"):
        export_model(model, "tflite", tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())
    shots = model.simulated(shots=64)
    side = export_model(shots, "torchscript", tmp_path / "shots.pt")
    assert "exact values those shots estimate" in side["exactness"]
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    exported = torch.jit.load(str(tmp_path / "shots.pt"))(images)
    torch.testing.assert_close(exported, model.probabilities(images), atol=1e-5, rtol=0)  # the exact model's
    assert (shots.probabilities(images) - model.probabilities(images)).abs().max() > 1e-3  # not 64 shots' draw


@pytest.mark.subprocess
def test_exports_predict_like_qtransfer_predict_in_a_process_without_qtransfer(
        finished_run, hymenoptera: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = finished_run[0]
    images = [str(p) for cls in ("ants", "bees") for p in sorted((hymenoptera / "val" / cls).glob("*.jpg"))[:1]]
    assert main(["--quiet", "predict", str(run_dir), *images, "--json"]) == 0
    predicted = np.array([list(r["probabilities"].values()) for r in json.loads(capsys.readouterr().out)])
    assert main(["--quiet", "export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "cli.onnx")]) == 0
    assert "cli.onnx" in capsys.readouterr().out
    model = TrainedModel.load(run_dir, device="cpu", progress=False)
    export_model(model, "torchscript", tmp_path / "ts.pt")
    side = export_model(model, "qasm", tmp_path / "q.qasm")
    assert side["files"] == {"model": "q.qasm", "classical": "q.classical.pt"}
    assert side["circuit"]["inputs"] == ["x0", "x1", "x2", "x3"] and side["classes"] == ["ants", "bees"]
    assert side["head"] == {"name": "quantum", "template": "tutorial", "n_qubits": 4, "depth": 6}
    sidecars = [str(tmp_path / name) for name in ("cli.json", "ts.json", "q.json")]
    script = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import deployed_client; "
              "print(json.dumps([deployed_client.predict(Path(s), sys.argv[5:]) for s in sys.argv[2:5]]))")
    done = subprocess.run([sys.executable, "-c", script, str(CLIENT.parent), *sidecars, *images], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)
    for out in outputs:
        assert out["qtransfer_imported"] is False
        np.testing.assert_allclose(np.array(out["probabilities"]), predicted, atol=1e-5, rtol=0)
    qasm = outputs[2]
    angles = torch.tensor(qasm["angles"], dtype=torch.float64)
    engine = CompiledCircuit(model.head.circuit, dtype=torch.float64)(angles, model.head.q_params.detach().double())
    np.testing.assert_allclose(np.array(qasm["expectations"]), engine.numpy(), atol=1e-6, rtol=0)
    assert [o["format"] for o in outputs] == ["onnx", "torchscript", "qasm"]
