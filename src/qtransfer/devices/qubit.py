"""`qtransfer.qubit`: PennyLane tapes run on the engine (statevector; dense and fused paths), float64 by default."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.modifiers import simulator_tracking, single_tape_support
from pennylane.devices.preprocess import (
    decompose,
    no_sampling,
    validate_device_wires,
    validate_measurements,
    validate_observables,
)
from pennylane.exceptions import DeviceError
from pennylane.math import Interface
from pennylane.transforms import broadcast_expand, defer_measurements
from pennylane.transforms.core import CompilePipeline

from qtransfer.devices import simulate as sim
from qtransfer.devices.native import NATIVE_NAMES, decomposition, is_native
from qtransfer.errors import InputError

DTYPES = {"float64": torch.float64, "float32": torch.float32}
METHODS = ("auto", "dense", "fused", "gates")
BACKPROP_INTERFACES = {Interface.TORCH}
DEVICE_DERIVATIVES = {"adjoint", "device"}
KEPT_RUNS = 64  # runs kept for device VJPs that never came are dropped beyond this


def _engine_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return DTYPES[dtype]


def _observable_has_matrix(obs) -> bool:
    return obs.has_matrix or obs.pauli_rep is not None


@simulator_tracking
@single_tape_support
class QTransferQubit(Device):
    """qtransfer's batched engine behind PennyLane's device API.

    Args:
        wires: number of wires or their labels (None: the tape's wires).
        shots: default shots (None: exact results).
        seed: seed of the sampler (None: fresh entropy).
        dtype: "float64" (default) or "float32", the engine's real precision.
        method: the engine's path, "auto" (dense up to 6 qubits, fused above), "dense", "fused" or "gates".
    """

    name = "qtransfer.qubit"
    _device_options = ("rng",)
    _native = staticmethod(is_native)
    _target_gates = NATIVE_NAMES
    _backprop_second_order = True  # through the engine's gate-by-gate path

    def __init__(self, wires=None, shots=None, seed=None, dtype: str = "float64", method: str = "auto") -> None:
        super().__init__(wires=wires, shots=shots)
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self._dtype, self._method = _engine_dtype(dtype), method
        self._rng = np.random.default_rng(seed)
        self._kept: dict = {}  # id(tape) -> (tape, its last run), for the vector-Jacobian product that follows

    # -- configuration -----------------------------------------------------------------------
    def supports_derivatives(self, execution_config: ExecutionConfig | None = None, circuit=None) -> bool:
        """Backprop through the engine's autograd node (torch; other interfaces get the adjoint sweep), the adjoint
        sweep for any interface; exact results only."""
        if execution_config is None:
            return True
        if execution_config.gradient_method in {"backprop", "best"} | DEVICE_DERIVATIVES:
            return circuit is None or not circuit.shots
        return False

    def supports_vjp(self, execution_config: ExecutionConfig | None = None, circuit=None) -> bool:
        """The adjoint sweep gives vector-Jacobian products directly."""
        return execution_config is None or execution_config.gradient_method in DEVICE_DERIVATIVES | {"best"}

    def setup_execution_config(self, config: ExecutionConfig | None = None, circuit=None) -> ExecutionConfig:
        """Resolve "best" (backprop under torch, else adjoint), device-derivative flags and the mid-circuit
        measurement method (deferral only)."""
        config = config or ExecutionConfig()
        for option in config.device_options:
            if option not in self._device_options:
                raise DeviceError(f"device option {option} not present on {self}")
        updated: dict = {"convert_to_numpy": True}
        method = config.gradient_method
        if method == "best":
            method = "backprop" if config.interface in BACKPROP_INTERFACES else "adjoint"
        if method == "device":
            method = "adjoint"
        converted = method == "backprop" and (
            config.interface not in BACKPROP_INTERFACES | {Interface.NUMPY}
            or (config.derivative_order > 1 and not self._backprop_second_order))
        if converted:
            # the engine is torch: other interfaces get exact derivatives from its reverse sweep (first order),
            # or from the parameter-shift rule (higher orders)
            method = "adjoint" if config.derivative_order == 1 else qml.gradients.param_shift
        updated["gradient_method"] = method
        device_gradient = method in ("adjoint", "backprop")
        if config.use_device_gradient is None or converted:
            updated["use_device_gradient"] = device_gradient
        if config.use_device_jacobian_product is None or converted:
            # converted: products, not Jacobians, so that complex results (state()) give real parameters real grads
            updated["use_device_jacobian_product"] = converted and method == "adjoint"
        if config.grad_on_execution is None or converted:
            updated["grad_on_execution"] = method == "adjoint"
        mcm = config.mcm_config
        if mcm.mcm_method not in (None, "deferred"):
            raise DeviceError(f"mcm_method {mcm.mcm_method!r} is not supported by {self.name}; it defers "
                              "mid-circuit measurements: use mcm_method='deferred' (the default)")
        if mcm.postselect_mode not in (None, "fill-shots"):
            raise DeviceError(f"postselect_mode {mcm.postselect_mode!r} is not supported by {self.name}")
        updated["mcm_config"] = replace(mcm, mcm_method="deferred")
        return replace(config, **updated)

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None) -> CompilePipeline:
        """Defer mid-circuit measurements, decompose to the engine's gates, check wires and measurements."""
        config = execution_config or ExecutionConfig()
        program = CompilePipeline()
        program.add_transform(defer_measurements, allow_postselect=False)
        program.add_transform(decompose, stopping_condition=self._native, device_wires=self.wires,
                              target_gates=set(self._target_gates), skip_initial_state_prep=False, name=self.name,
                              decomposer=decomposition)
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(validate_measurements, name=self.name)
        if config.gradient_method == "backprop":
            program.add_transform(no_sampling, name=f"backprop + {self.name}")
        if config.gradient_method == "adjoint":
            program.add_transform(no_sampling, name=f"adjoint + {self.name}")
            program.add_transform(validate_observables, _observable_has_matrix, name=f"adjoint + {self.name}")
            if not config.use_device_jacobian_product:
                program.add_transform(broadcast_expand)
        return program

    # -- execution ---------------------------------------------------------------------------
    def _standard(self, tape):
        """The tape on wires 0..n-1 (the device's order, else the tape's), and n."""
        order = self.wires if self.wires is not None else tape.wires
        wire_map = {w: i for i, w in enumerate(order)}
        if any(wire_map.get(w) != w for w in tape.wires):
            tape = tape.map_to_standard_wires() if self.wires is None else _map(tape, wire_map)
        return tape, max(1, len(order))

    def execute(self, circuits, execution_config: ExecutionConfig | None = None):
        """Each tape's results; torch tensors with autograd under backprop, numpy otherwise."""
        config = execution_config or ExecutionConfig()
        backprop = config.gradient_method == "backprop" and config.interface in BACKPROP_INTERFACES
        # the engine's autograd nodes differentiate once; higher orders go gate by gate through torch autograd
        method = "gates" if backprop and config.derivative_order > 1 else self._method
        # with device VJPs, the backward pass comes next: keep each tape's run, so it costs one reverse sweep
        keep = config.gradient_method == "adjoint" and bool(config.use_device_jacobian_product)
        if len(self._kept) > KEPT_RUNS:
            self._kept.clear()
        out = []
        for original in circuits:
            tape, n = self._standard(original)
            if keep:
                run = partial(self._simulate, n=n, method=self._method, torch_out=True)
                first, results = sim.forward(tape, run, self._dtype)
                self._kept[id(original)] = (original, first)  # the tape itself is kept, so its id is not reused
                out.append(results)
                continue
            torch_out = backprop and any(isinstance(p, torch.Tensor) for p in tape.get_parameters(trainable_only=False))
            out.append(self._simulate(tape, n, method, rng=self._rng, torch_out=torch_out))
        return tuple(out)

    def compute_derivatives(self, circuits, execution_config: ExecutionConfig | None = None):
        """Jacobians by the engine's adjoint sweep."""
        return tuple(self._jacobian(c)[0] for c in circuits)

    def execute_and_compute_derivatives(self, circuits, execution_config: ExecutionConfig | None = None):
        """Results and Jacobians, sharing the first forward run."""
        pairs = [self._jacobian(c) for c in circuits]
        return tuple(p[1] for p in pairs), tuple(p[0] for p in pairs)

    def _jacobian(self, tape):
        tape, n = self._standard(tape)
        return sim.jacobian(tape, partial(self._simulate, n=n, method=self._method, torch_out=True), self._dtype)

    def compute_vjp(self, circuits, cotangents, execution_config: ExecutionConfig | None = None):
        """Vector-Jacobian products: one forward and one adjoint sweep per tape."""
        return tuple(self._vjp(c, dy)[0] for c, dy in zip(circuits, cotangents))

    def execute_and_compute_vjp(self, circuits, cotangents, execution_config: ExecutionConfig | None = None):
        """Results and vector-Jacobian products from one run per tape."""
        pairs = [self._vjp(c, dy) for c, dy in zip(circuits, cotangents)]
        return tuple(p[1] for p in pairs), tuple(p[0] for p in pairs)

    def _vjp(self, tape, cotangents):
        original, first = self._kept.pop(id(tape), (None, None))
        first = first if original is tape else None  # a tape's hash costs more than a 4-qubit run
        tape, n = self._standard(tape)
        run = partial(self._simulate, n=n, method=self._method, torch_out=True)
        return sim.execute_and_vjp(tape, cotangents, run, self._dtype, first)

    def _simulate(self, tape, n: int, method: str, rng=None, torch_out: bool = False, params=None):
        """The results of a tape on wires 0..n-1 (with its operations' parameters replaced by `params`)."""
        return sim.simulate(tape, n, self._dtype, method, rng=rng, torch_out=torch_out, params=params)


def _map(tape, wire_map: dict):
    tapes, fn = qml.map_wires(tape, wire_map)
    return fn(tapes)
