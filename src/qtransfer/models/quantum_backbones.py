"""Quantum networks A: pretrained circuits, frozen and cut after k layers, looked up by name.

Their inputs are classical descriptions of the input quantum states (displacements, angles); their outputs
are measurement statistics (features for a classical network B) or the state itself (for a quantum network B).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from qtransfer import hub
from qtransfer.errors import InputError, MissingFileError
from qtransfer.models.backbones import fetch_weights, verify_weights
from qtransfer.quantum import fock_gates as gates
from qtransfer.quantum.circuits import make_circuit
from qtransfer.quantum.fock import FockState
from qtransfer.quantum.fock_gates import CubicPhase
from qtransfer.quantum.statevector import CompiledCircuit, probabilities
from qtransfer.registry import Registry, unknown_name
from qtransfer.storage import atomic_torch_save

FeatureKind = Literal["amplitude", "probability"]

# The paper's pretrained CV weights (XanaduAI/quantum-transfer-learning, Apache-2.0, folder pre_trained/).
MARI2019_URL = "https://raw.githubusercontent.com/XanaduAI/quantum-transfer-learning/master/pre_trained/{}"
MARI2019_FILES = {
    "trained_params.npy": "f529b6ebd87111f6ed4de82df569c8d5e83c4d1dbc1b3bc04182e0ffc6f6037d",  # (16, 25)
    "circuit_A.npy": "adcc41c80444b5ea5e3bb71f9a3533059007d3c8b788c603c10cc46cd64e0acd",  # (6, 1)
}
CLIP = 1.0  # the notebooks clip squeezing, displacement and Kerr/cubic strengths to [-1, 1]
TETROMINO_ALPHA = 1.4  # coherent amplitude the tetromino network was trained with


def mari2019_weights(name: str, source: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """One of the paper's pretrained weight arrays: from a file or folder `source`, the cache, or a download."""
    if name not in MARI2019_FILES:
        raise unknown_name("pretrained file", name, MARI2019_FILES)
    sha = MARI2019_FILES[name]
    if source is not None:
        path = Path(source) / name if Path(source).is_dir() else Path(source)
        if not path.is_file():
            raise MissingFileError(f"{path} does not exist; pass the folder holding {name} or the file itself")
    else:
        path = hub.checkpoint_dir() / f"mari2019-{name}"
        if not path.is_file():
            url = os.environ.get("QTRANSFER_MARI2019_URL", MARI2019_URL)
            fetch_weights(url.format(name), path, sha, f"the paper's pretrained {name}",
                          f"Put the file from the paper's repository (pre_trained/{name}) at {path} or pass "
                          "--data FOLDER holding it", progress)
    verify_weights(path, sha, "delete it (it will be fetched again) or pass --data FOLDER")  # pins content and shape
    return np.load(path, allow_pickle=False).astype(np.float64)


GateLayer = list[tuple[str, Tensor, Any]]  # (kind: one | diagonal | two, matrix, mode or modes)
APPLY: dict[str, Callable[[FockState, Tensor, Any], FockState]] = {
    "one": FockState.apply, "diagonal": FockState.apply_diagonal, "two": FockState.apply_two}


def _clip(x: Tensor) -> Tensor:
    return x.clamp(-CLIP, CLIP)


# ---------------------------------------------------------------------------------- CV networks


class TetrominoNetwork(nn.Module):
    """Killoran et al.'s two-mode CV network (25 layers, trained to write the 7 tetrominoes into Fock
    probabilities), cut after `depth` layers: coherent inputs -> the 4×4 low-photon block of the output.

    Input (B, 4): Re α1, Im α1, Re α2, Im α2 of the two-mode coherent input state. Output (B, 16): the
    amplitudes' magnitudes (the paper's notebook) or probabilities, renormalised on n1, n2 < 4.
    """

    ROWS = ("r1", "r2", "theta1", "phi1", "theta2", "phi2", "sqr1", "sqphi1", "sqr2", "sqphi2",
            "dr1", "dphi1", "dr2", "dphi2", "kappa1", "kappa2")
    params: Tensor

    def __init__(self, params: np.ndarray | Tensor, depth: int = 15, cutoff: int = 11,
                 features: FeatureKind = "amplitude", image: int = 4):
        super().__init__()
        params = torch.as_tensor(params, dtype=torch.float64)
        if not 0 <= depth <= params.shape[1]:
            raise InputError(f"depth must be in 0..{params.shape[1]} (the pretrained layers), got {depth}")
        if cutoff < image:
            raise InputError(f"cutoff {cutoff} is below the {image}×{image} feature block; use cutoff ≥ {image}")
        self.register_buffer("params", params[:, :depth].clone())
        self.depth, self.cutoff, self.features, self.image = depth, cutoff, features, image
        self.out_features = image * image
        self._gates: tuple[torch.device, list[GateLayer]] | None = None

    def states(self, x: Tensor) -> Iterator[FockState]:
        """The state before the first layer and after each kept layer, for inputs x (B, 4)."""
        x = x.to(self.params.dtype)
        a1, a2 = torch.complex(x[:, 0], x[:, 1]), torch.complex(x[:, 2], x[:, 3])
        s = FockState.vacuum(2, self.cutoff, batch=len(x), dtype=torch.complex128, device=x.device)
        s = s.displace(a1.abs(), a1.angle(), 0).displace(a2.abs(), a2.angle(), 1)
        yield s
        for layer in self._layer_gates():
            for kind, matrix, where in layer:
                s = APPLY[kind](s, matrix, where)
            yield s

    def _layer_gates(self) -> list[GateLayer]:
        """Every layer's gate matrices, built once per device: the weights are frozen."""
        if self._gates is None or self._gates[0] != self.params.device:
            c = self.cutoff
            layers: list[GateLayer] = []
            for column in self.params.T:
                p = dict(zip(self.ROWS, column))
                layers.append([
                    ("two", gates.beamsplitter(p["theta1"], p["phi1"], c), (0, 1)),
                    ("diagonal", gates.rotation(p["r1"], c), 0),
                    ("one", gates.squeezing(_clip(p["sqr1"]), p["sqphi1"], c), 0),
                    ("one", gates.squeezing(_clip(p["sqr2"]), p["sqphi2"], c), 1),
                    ("two", gates.beamsplitter(p["theta2"], p["phi2"], c), (0, 1)),
                    ("diagonal", gates.rotation(p["r2"], c), 0),
                    ("one", gates.displacement(_clip(p["dr1"]), p["dphi1"], c), 0),
                    ("one", gates.displacement(_clip(p["dr2"]), p["dphi2"], c), 1),
                    ("diagonal", gates.kerr(_clip(p["kappa1"]), c), 0),
                    ("diagonal", gates.kerr(_clip(p["kappa2"]), c), 1),
                ])
            self._gates = (self.params.device, layers)
        return self._gates[1]

    def state(self, x: Tensor) -> FockState:
        """Output state of the cut network for inputs x (B, 4)."""
        *_, last = self.states(x)
        return last

    def featurize(self, state: FockState) -> Tensor:
        """The renormalised 4×4 low-photon block of a state, as magnitudes or probabilities (B, 16)."""
        probs = state.probabilities()[:, : self.image, : self.image].flatten(1)
        probs = probs / probs.sum(1, keepdim=True)
        return (probs.sqrt() if self.features == "amplitude" else probs).float()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.featurize(self.state(x))


def tetromino_inputs(alpha: float = TETROMINO_ALPHA) -> Tensor:
    """The 7 noiseless input states as (Re α1, Im α1, Re α2, Im α2): |±α>|±α> and |±iα>|±iα> as in the paper."""
    first = [alpha, -alpha, alpha, -alpha, 1j * alpha, -1j * alpha, 1j * alpha]
    second = [alpha, alpha, -alpha, -alpha, 1j * alpha, 1j * alpha, -1j * alpha]
    return torch.tensor([[a.real, a.imag, b.real, b.imag] for a, b in zip(map(complex, first), map(complex, second))],
                        dtype=torch.float64)


class GaussianityLayers(nn.Module):
    """Single-mode CV layers R·S·R·D·R·V (the paper's QQ example), each parameter column
    (squeezing, displacement, r1, r2, r3, cubic phase); strengths clipped to [-1, 1].

    Parameters (6, layers), or (K, 6, layers) for K stacked networks acting on a state of `models` K.
    The paper's notebook builds circuit A's squeezing gate without applying it; `squeeze_in_layer=False`
    reproduces that. `cubic_phase` names V's convention (quantum.fock_gates.CUBIC_PHASE_CONVENTIONS): "exact"
    (converged), or "truncated" (Strawberry Fields' gate, which the paper's simulator used).
    """

    def __init__(self, params: Tensor, trainable: bool, squeeze_in_layer: bool = True,
                 cubic_phase: CubicPhase = "exact"):
        super().__init__()
        params = torch.as_tensor(params, dtype=torch.float64)
        if params.dim() not in (2, 3) or params.shape[-2] != 6:
            raise InputError(f"CV layer parameters must have shape (6, layers) or (models, 6, layers), got "
                             f"{tuple(params.shape)}")
        if cubic_phase not in gates.CUBIC_PHASE_CONVENTIONS:
            raise InputError(f"cubic phase convention {cubic_phase!r} is not one of "
                             f"{', '.join(gates.CUBIC_PHASE_CONVENTIONS)}; pick one of them")
        if trainable:
            self.params = nn.Parameter(params.clone())
        else:
            self.register_buffer("params", params.clone())
        self.squeeze_in_layer, self.cubic_phase, self.trainable = squeeze_in_layer, cubic_phase, trainable
        self._frozen: dict[tuple, Tensor] = {}  # frozen layers: their product matrix per (cutoff, device)

    def forward(self, s: FockState) -> FockState:
        if not self.trainable and self.params.dim() == 2:
            key = (s.cutoff, s.ket.device)
            if key not in self._frozen:  # the weights never change: one matrix for all layers
                eye = torch.eye(s.cutoff, dtype=torch.complex128, device=s.ket.device)
                self._frozen[key] = self._layers(FockState(eye)).ket.T
            return s.apply(self._frozen[key], 0)
        return self._layers(s)

    def _layers(self, s: FockState) -> FockState:
        c, p = s.cutoff, self.params.to(s.ket.real.dtype)
        sq, d, r1, r2, r3, v = p.unbind(-2)  # each (layers,) or (K, layers): every layer's gates in one call
        zero = torch.zeros_like(sq)
        rotations = [gates.rotation(r, c).unbind(-2) for r in (r1, r2, r3)]
        squeezes = gates.squeezing(_clip(sq), zero, c).unbind(-3) if self.squeeze_in_layer else None
        displacements = gates.displacement(_clip(d), zero, c).unbind(-3)
        cubics = gates.cubic_phase_gate(_clip(v), c, self.cubic_phase).unbind(-3)
        for layer in range(p.shape[-1]):
            s = s.apply_diagonal(rotations[0][layer], 0)
            if squeezes is not None:
                s = s.apply(squeezes[layer], 0)
            s = s.apply_diagonal(rotations[1][layer], 0).apply(displacements[layer], 0)
            s = s.apply_diagonal(rotations[2][layer], 0).apply(cubics[layer], 0)
        return s


# ---------------------------------------------------------------------------------- qubit networks


TETROMINOES = {  # laid out as Killoran et al.'s network writes them (rows: photons in mode 1)
    "L": ["X...", "X...", "XX..", "...."],
    "O": ["XX..", "XX..", "....", "...."],
    "T": ["XXX.", ".X..", "....", "...."],
    "I": ["X...", "X...", "X...", "X..."],
    "S": [".XX.", "XX..", "....", "...."],
    "J": [".X..", ".X..", "XX..", "...."],
    "Z": ["XX..", ".XX.", "....", "...."],
}


def tetromino_images() -> Tensor:
    """The 7 tetrominoes as 4×4 probability images (7, 16), rows summing to 1."""
    images = torch.tensor([[c == "X" for row in rows for c in row] for rows in TETROMINOES.values()],
                          dtype=torch.float64)
    return images / images.sum(1, keepdim=True)


@dataclass
class QubitCircuitFile:
    """A pretrained qubit circuit as saved: template, qubits, per-layer weights, input scale, what task A was."""

    template: str
    n_qubits: int
    weights: Tensor  # (layers, ...) as the template shapes one layer
    input_scale: float
    task: str
    loss: float

    def save(self, path: Path) -> None:
        """Write atomically; plain tensors and strings only, so loading never unpickles code."""
        atomic_torch_save({"template": self.template, "n_qubits": self.n_qubits, "weights": self.weights,
                           "input_scale": self.input_scale, "task": self.task, "loss": self.loss}, Path(path))

    @classmethod
    def load(cls, path: Path) -> QubitCircuitFile:
        """Read a file written by `save`, refusing anything else."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return cls(str(d["template"]), int(d["n_qubits"]), torch.as_tensor(d["weights"], dtype=torch.float64),
                       float(d["input_scale"]), str(d["task"]), float(d["loss"]))
        except Exception as err:
            raise InputError(f"{path} is not a pretrained qubit circuit saved by qtransfer ({err})") from err


class QubitNetwork(nn.Module):
    """A pretrained qubit circuit cut after `depth` of its layers: inputs (B, n) -> state, or features (B, 2^n)."""

    weights: Tensor

    def __init__(self, pretrained: QubitCircuitFile, depth: int, features: FeatureKind = "amplitude"):
        super().__init__()
        layers = pretrained.weights.shape[0]
        if not 0 <= depth <= layers:
            raise InputError(f"depth must be in 0..{layers} (the pretrained layers), got {depth}")
        self.pretrained, self.depth, self.features = pretrained, depth, features
        self.register_buffer("weights", pretrained.weights[:depth].flatten().clone())
        self.sim = CompiledCircuit(make_circuit(pretrained.template, pretrained.n_qubits, depth), dtype=torch.float64)
        self.out_features = 2**pretrained.n_qubits

    def state(self, x: Tensor) -> Tensor:
        """Output states (B, 2, …, 2) for inputs x (B, n)."""
        return self.sim.state(x.to(torch.float64) * self.pretrained.input_scale, self.weights)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        probs = probabilities(self.state(x))
        return (probs.sqrt() if self.features == "amplitude" else probs).float()


def pretrain_qubit_tetromino(layers: int = 8, steps: int = 600, lr: float = 0.05, seed: int = 0,
                             template: str = "strongly_entangling") -> QubitCircuitFile:
    """Task A on 4 qubits: write tetromino j into the Born probabilities of input j (the CV task, on qubits)."""

    circuit = make_circuit(template, 4, layers)
    sim = CompiledCircuit(circuit, dtype=torch.float64)
    scale = math.pi / (2 * TETROMINO_ALPHA)  # ±α -> ±π/2
    inputs, target = tetromino_inputs() * scale, tetromino_images().sqrt()
    generator = torch.Generator().manual_seed(seed)
    weights = (0.1 * torch.randn(circuit.n_weights, generator=generator, dtype=torch.float64)).requires_grad_()
    optimizer = torch.optim.Adam([weights], lr=lr)
    for _ in range(steps):
        amplitudes = sim.state(inputs, weights).flatten(1).abs()
        loss = 1 - (amplitudes * target).sum(1).mean()  # 1 − Bhattacharyya overlap of the distributions
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return QubitCircuitFile(template, 4, weights.detach().reshape(layers, *circuit.weight_shape[1:]), scale,
                            "tetromino images in Born probabilities (4 qubits)", loss.item())


# ---------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class QuantumBackboneSpec:
    """A quantum network A: what it was trained on and how to build it cut after `depth` layers."""

    name: str
    description: str
    layers: int
    default_depth: int
    build: Callable[..., nn.Module]


QUANTUM_BACKBONES: Registry[QuantumBackboneSpec] = Registry("quantum backbone")


def _register(spec: QuantumBackboneSpec) -> None:
    QUANTUM_BACKBONES.register(spec.name)(spec)


_register(QuantumBackboneSpec(
    "cv-tetromino", "Killoran et al.'s two-mode CV network writing tetrominoes into Fock probabilities (QC)",
    25, 15, lambda depth, weights=None, **kw: TetrominoNetwork(mari2019_weights("trained_params.npy", weights),
                                                               depth, **kw)))
_register(QuantumBackboneSpec(
    "cv-gaussianity", "the paper's one-layer CV circuit A pretrained on Gaussian vs non-Gaussian states (QQ); setting "
    "cubic_phase='exact' (default, converged) or 'truncated' (Strawberry Fields' gate, the paper's)",
    1, 1, lambda depth, weights=None, **kw: GaussianityLayers(
        torch.as_tensor(mari2019_weights("circuit_A.npy", weights))[:, :depth], trainable=False, **kw)))
_register(QuantumBackboneSpec(
    "qubit-tetromino", "a 4-qubit circuit pretrained to write tetrominoes into Born probabilities (QC, QQ)",
    8, 5, lambda depth, weights=None, **kw: QubitNetwork(
        QubitCircuitFile.load(Path(weights)) if weights else pretrain_qubit_tetromino(), depth, **kw)))


def create_quantum_backbone(name: str, depth: int | None = None, weights: str | Path | None = None,
                            **options: Any) -> nn.Module:
    """The named quantum network A, frozen, cut after `depth` layers (default: the paper's cut)."""
    spec = QUANTUM_BACKBONES.lookup(name)
    module = spec.build(spec.default_depth if depth is None else depth, weights, **options)
    return module.requires_grad_(False).eval()
