"""Run a circuit description: the built-in engine ("torch") or any PennyLane device ("pennylane:<name>")."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from qtransfer.errors import InputError, MissingPackageError
from qtransfer.quantum.circuits import Circuit, Observable
from qtransfer.quantum.density import DensityMatrixSimulator, NoiseModel
from qtransfer.quantum.sampling import (
    Estimator,
    ParameterShift,
    Unrolled,
    angles,
    measurement_groups,
    parity_signs,
    readout_probabilities,
    rotated,
    shift_rules,
    unroll,
)
from qtransfer.quantum.statevector import CompiledCircuit, model_axis, probabilities
from qtransfer.registry import unknown_name

CacheKey = tuple[Circuit, torch.dtype, torch.device]


class Backend(Protocol):
    """Maps (circuit, inputs (batch, n_inputs), flat weights) to expectation values (batch, n_outputs)."""

    name: str

    def __call__(self, circuit: Circuit, inputs: Tensor, weights: Tensor) -> Tensor: ...


class TorchBackend:
    """The built-in batched engine; precision follows the weights' dtype (float32 or float64).

    `per_sample=True` simulates one sample per call, as the reference tutorial does (same values, slower).
    `shots=N` estimates every expectation value from N sampled bit strings (seeded by `seed`) and takes
    gradients by the parameter-shift rule, as on hardware; `diff_method="parameter-shift"` does so without
    shots. `noise` (a NoiseModel or its text, e.g. "depolarizing=0.01,readout=0.02") simulates density
    matrices with channels after gates, and readout error.

    Many same-shape models run in one call with a leading model axis: inputs (models, batch, n_inputs) and
    weights (models, n_weights) give (models, batch, n_outputs), each model with its own gradient (exact
    statevector runs only: shots, noise and parameter shift refuse it).
    """

    def __init__(
        self,
        method: str = "auto",
        per_sample: bool = False,
        shots: int | None = None,
        diff_method: str = "best",
        seed: int = 0,
        noise: NoiseModel | str | None = None,
    ):
        if shots is not None and shots < 1:
            raise InputError(f"shots must be >= 1 (or None for exact values), got {shots}")
        if diff_method not in ("best", "adjoint", "backprop", "parameter-shift"):
            raise InputError(f"diff_method must be best, adjoint, backprop or parameter-shift, got {diff_method!r}")
        self.method, self.per_sample, self.shots, self.seed = method, per_sample, shots, seed
        self.noise = NoiseModel.parse(noise) if isinstance(noise, str) else noise
        self.diff_method = "parameter-shift" if shots else diff_method
        self.name = "torch" + "".join(
            f", {k}={v}" for k, v in (("shots", shots), ("noise", (self.noise and self.noise.text) or None)) if v
        )
        self._compiled: dict[CacheKey, CompiledCircuit] = {}
        self._estimators: dict[CacheKey, tuple[Unrolled, Estimator]] = {}
        # per observable group measurable together: its members, its density simulator, its signs
        self._density: dict[CacheKey, list[tuple[list[int], DensityMatrixSimulator, Tensor]]] = {}

    @property
    def exact_pure(self) -> bool:
        """Whether circuits run on the plain statevector engine (no shots, no noise, analytic gradients)."""
        return not self.shots and self.noise is None and self.diff_method != "parameter-shift"

    def compiled(self, circuit: Circuit, dtype: torch.dtype, device: torch.device) -> CompiledCircuit:
        """The circuit compiled for this dtype and device (cached)."""
        key = (circuit, dtype, device)
        if key not in self._compiled:
            self._compiled[key] = CompiledCircuit(circuit, dtype=dtype, device=device, method=self.method)
        return self._compiled[key]

    def __call__(self, circuit: Circuit, inputs: Tensor, weights: Tensor) -> Tensor:
        dtype = torch.float64 if weights.dtype == torch.float64 else torch.float32
        models = model_axis(circuit, inputs, weights)
        if models is not None and not self.exact_pure:
            raise InputError(
                f"backend {self.name!r} (shots, noise or parameter shift) runs one model per call; got "
                f"{models} models stacked on a leading axis: call it once per model, or use exact TorchBackend()"
            )
        if self.noise is not None and self.noise.channels and not self.shots and self.diff_method != "parameter-shift":
            return self._exact_noisy(circuit, inputs, weights.to(dtype))
        if not self.exact_pure:
            return self._measured(circuit, inputs, weights.to(dtype))
        compiled = self.compiled(circuit, dtype, weights.device)
        if self.per_sample and models is not None and inputs is not None:
            return torch.cat([compiled(inputs[:, i : i + 1], weights) for i in range(inputs.shape[1])], 1)
        if self.per_sample:
            return torch.cat([compiled(x[None], weights) for x in inputs])
        return compiled(inputs, weights)

    def _exact_noisy(self, circuit: Circuit, inputs: Tensor, weights: Tensor) -> Tensor:
        """Exact expectation values under noise: density matrices with the circuit's own inputs and shared
        weights (one simulation per group of observables measurable together), then readout error."""
        noise = self.noise
        assert noise is not None
        key = (circuit, weights.dtype, weights.device)
        if key not in self._density:
            groups = []
            for members in measurement_groups(circuit.observables):
                observables = [circuit.observables[i] for i in members]
                sim = DensityMatrixSimulator(rotated(circuit, observables), noise, weights.dtype,
                                             weights.device, noisy_gates=len(circuit.gates))
                signs = torch.as_tensor(parity_signs(circuit.n_qubits, observables), dtype=weights.dtype,
                                        device=weights.device)
                groups.append((members, sim, signs))
            self._density[key] = groups
        batch = inputs.shape[0] if inputs is not None and inputs.dim() == 2 else 1
        out = weights.new_zeros(batch, circuit.n_outputs)
        for members, sim, signs in self._density[key]:
            probs = sim.probabilities(inputs.to(weights.dtype) if circuit.n_inputs else None, weights, batch)
            probs = readout_probabilities(probs, circuit.n_qubits, *noise.readout)
            out[:, members] = probs @ signs
        return out

    def _measured(self, circuit: Circuit, inputs: Tensor, weights: Tensor) -> Tensor:
        key = (circuit, weights.dtype, weights.device)
        if key not in self._estimators:
            unrolled = unroll(circuit)
            readout = self.noise.readout if self.noise else (0.0, 0.0)
            probs = self._probabilities_fn(weights.dtype, weights.device, len(unrolled.circuit.gates))
            self._estimators[key] = (unrolled, Estimator(unrolled, probs, self.shots, readout, self.seed))
        unrolled, estimator = self._estimators[key]
        a = angles(unrolled, inputs.to(weights.dtype), weights)
        if self.diff_method == "parameter-shift":
            out: Tensor = ParameterShift.apply(a, estimator, shift_rules(unrolled))
            return out
        return estimator(a)

    def _probabilities_fn(self, dtype: torch.dtype, device: torch.device,
                          noisy_gates: int) -> Callable[[Circuit, Tensor], Tensor]:
        empty = torch.zeros(0, dtype=dtype, device=device)
        simulators: dict[Circuit, DensityMatrixSimulator] = {}

        def pure(circuit: Circuit, a: Tensor) -> Tensor:
            return probabilities(self.compiled(circuit, dtype, device).state(a, empty))

        def mixed(circuit: Circuit, a: Tensor) -> Tensor:
            if circuit not in simulators:
                assert self.noise is not None
                simulators[circuit] = DensityMatrixSimulator(circuit, self.noise, dtype, device, noisy_gates)
            return simulators[circuit].probabilities(a, empty, a.shape[0])

        return mixed if self.noise is not None and self.noise.channels else pure


# PennyLane names of our gates where they differ.
_QML_NAMES = {"H": "Hadamard", "X": "PauliX", "Y": "PauliY", "Z": "PauliZ"}

# Which pip package provides a PennyLane device, for the error when it is missing.
_DEVICE_PACKAGES = {
    "lightning": "pennylane-lightning",
    "qiskit": "pennylane-qiskit",
    "braket": "amazon-braket-pennylane-plugin",
    "cirq": "pennylane-cirq",
    "rigetti": "pennylane-rigetti",
    "ionq": "pennylane-ionq",
}


def require_pennylane() -> Any:
    """Import PennyLane, or fail with the install command."""
    if importlib.util.find_spec("pennylane") is None:
        raise MissingPackageError(
            "the PennyLane backend needs PennyLane: pip install 'qtransfer[pennylane]'"
        )
    import pennylane as qml

    return qml


def _device_error(qml: Any) -> type[Exception]:
    """PennyLane's DeviceError (moved to pennylane.exceptions in newer releases)."""
    exceptions = getattr(qml, "exceptions", None)
    error: type[Exception] = getattr(exceptions, "DeviceError", None) or qml.DeviceError
    return error


class PennyLaneBackend:
    """A PennyLane device running the same circuit description through a torch-interface QNode.

    Batches by parameter broadcasting (devices that cannot broadcast split the batch
    themselves); `per_sample=True` runs one QNode call per sample, as the reference tutorial does.
    """

    def __init__(
        self,
        device: str = "default.qubit",
        diff_method: str = "best",
        device_options: dict[str, Any] | None = None,
        per_sample: bool = False,
    ):
        self.device_name = device
        self.name = f"pennylane:{device}"
        self.diff_method = diff_method
        self.device_options = dict(device_options or {})
        self.per_sample = per_sample
        self._qnodes: dict[Circuit, Any] = {}

    def check_available(self) -> None:
        """Refuse a device that is not installed, naming its package; nothing is built, nothing contacted."""
        qml = require_pennylane()
        if self.device_name not in qml.plugin_devices:
            raise InputError(f"PennyLane device {self.device_name!r} is not available.{self._package_hint()} "
                             f"(installed: {', '.join(sorted(qml.plugin_devices))})")

    def _package_hint(self) -> str:
        pkg = _DEVICE_PACKAGES.get(self.device_name.split(".")[0])
        return f" It is provided by the package {pkg!r}: pip install {pkg}" if pkg else ""

    def qnode(self, circuit: Circuit) -> Any:
        """The QNode for `circuit` on this device (cached)."""
        if circuit not in self._qnodes:
            self._qnodes[circuit] = self._build(circuit)
        return self._qnodes[circuit]

    def _build(self, circuit: Circuit) -> Any:
        qml = require_pennylane()
        options = dict(self.device_options)
        shots = options.pop("shots", None)
        if isinstance(options.get("noise_model"), str):
            options["noise_model"] = fake_backend_noise_model(options["noise_model"])
        if self.device_name == "qiskit.remote" and isinstance(options.get("backend"), str):
            from qiskit_ibm_runtime import (
                QiskitRuntimeService,  # the account saved with QiskitRuntimeService.save_account
            )

            options["backend"] = QiskitRuntimeService().backend(options["backend"])
        try:
            dev = qml.device(self.device_name, wires=circuit.n_qubits, **options)
        except _device_error(qml) as err:
            raise InputError(f"PennyLane device {self.device_name!r} is not available.{self._package_hint()} "
                             f"({err})") from err

        def observable(o: Observable) -> Any:
            ops = [getattr(qml, _QML_NAMES[p])(w) for p, w in zip(o.paulis, o.wires)]
            return ops[0] if len(ops) == 1 else qml.prod(*ops)

        def apply(inputs: Tensor, weights: Tensor) -> list[Any]:
            for g in circuit.gates:
                params = []
                for p in g.params:
                    if p.source == "input":
                        params.append(inputs[..., p.index])
                    elif p.source == "weight":
                        params.append(weights[p.index])
                    else:
                        # a tensor, not a float: some PennyLane ops fail on mixed float/tensor params
                        params.append(torch.tensor(p.value, dtype=weights.dtype, device=weights.device))
                getattr(qml, _QML_NAMES.get(g.name, g.name))(*params, wires=list(g.wires))
            return [qml.expval(observable(o)) for o in circuit.observables]

        qnode = qml.QNode(apply, dev, interface="torch", diff_method=self.diff_method)
        return qml.set_shots(qnode, shots=shots) if shots else qnode

    def __call__(self, circuit: Circuit, inputs: Tensor, weights: Tensor) -> Tensor:
        qnode = self.qnode(circuit)
        if self.per_sample:
            rows = [torch.stack(list(qnode(x, weights))) for x in inputs]
            out = torch.stack(rows)
        else:
            out = torch.stack(list(qnode(inputs, weights)), dim=-1)
            if out.dim() == 1:
                out = out.expand(inputs.shape[0], -1)
        return out.to(weights.dtype)


def make_backend(
    name: str, shots: int | None = None, noise: str | None = None, device_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> Backend:
    """A backend from the run's settings: the engine with shots and noise, or a PennyLane device with options."""
    if name.startswith("pennylane:"):
        if noise:
            raise InputError(
                "--noise is simulated by the built-in engine (--backend torch); a PennyLane device takes its own "
                "noise, e.g. --device-options '{\"noise_model\": \"FakeManilaV2\"}' for pennylane:qiskit.aer"
            )
        options = dict(device_options or {})
        if shots:
            options["shots"] = shots
        return PennyLaneBackend(name.split(":", 1)[1], device_options=options)
    if device_options:
        raise InputError("--device-options are for PennyLane devices (--backend pennylane:<device>)")
    if name == "torch":
        return TorchBackend(shots=shots or None, noise=noise or None, seed=seed)
    return get_backend(name)


def get_backend(spec: str | Backend = "torch", **options: Any) -> Backend:
    """A backend from its name: 'torch' or 'pennylane:<device>' (options go to its constructor)."""
    if not isinstance(spec, str):
        return spec
    if spec == "torch":
        return TorchBackend(**options)
    if spec.startswith("pennylane:") and spec != "pennylane:":
        return PennyLaneBackend(spec.split(":", 1)[1], **options)
    raise InputError(
        f"unknown backend {spec!r}; use 'torch' (built-in) or 'pennylane:<device>', "
        "e.g. 'pennylane:default.qubit' or 'pennylane:lightning.qubit'"
    )


def fake_backend_noise_model(name: str) -> Any:
    """Qiskit Aer's noise model of one of IBM's fake (offline, recorded) backends, e.g. 'FakeManilaV2'."""
    if importlib.util.find_spec("qiskit_ibm_runtime") is None or importlib.util.find_spec("qiskit_aer") is None:
        raise MissingPackageError("a fake IBM backend's noise model needs qiskit: pip install 'qtransfer[qiskit]'")
    from qiskit_aer.noise import NoiseModel as AerNoiseModel
    from qiskit_ibm_runtime import fake_provider

    known = [n for n in dir(fake_provider) if n.startswith("Fake") and n.endswith("V2")]
    if name not in known:
        raise unknown_name("fake IBM backend", name, known)
    return AerNoiseModel.from_backend(getattr(fake_provider, name)())
