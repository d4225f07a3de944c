"""One dataclass holds every setting of a training run, with the reference tutorial's defaults."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from qtransfer.errors import InputError, MissingFileError

if TYPE_CHECKING:
    from typing_extensions import Self

MAX_QUBITS = 50  # a state of 2^50 amplitudes is 8 PiB: more than any machine simulates
MAX_DEPTH = 10_000
MAX_SEED = 2**32 - 1  # what every generator takes (numpy's and scikit-learn's included)
KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
KERNEL_HEADS = ("qkernel", "projected_qkernel")  # their embedding was their `template` before it had its own name


@dataclass
class TrainConfig:
    """Settings of one training run; the CLI flags map onto these fields, and config.json holds them."""

    data: str = ""
    backbone: str = "efficientnet_lite0"  # its ImageNet weights install with the package: works offline
    weights: str = "default"  # "default" (cache, then download), a file path, or "none"
    head: str = "quantum"
    n_qubits: int = 4
    depth: int = 6
    template: str = "tutorial"  # the quantum head's circuit (quantum.circuits.TEMPLATES)
    entangle: bool = True  # False: the circuit with its multi-qubit gates removed (a control)
    embedding: str = "tutorial"  # the kernel heads' feature map (quantum.embeddings.EMBEDDINGS)
    backend: str = "torch"
    q_delta: float = 0.01
    epochs: int = 30
    batch_size: int = 4
    lr: float = 4e-4
    weight_decay: float = 0.0  # Adam's L2 penalty on every trained parameter
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 42
    device: str = "auto"
    out: str = "runs"
    name: str = ""
    cache_dir: str = ""  # empty: $QTRANSFER_CACHE or the user's cache directory
    no_cache: bool = False
    num_workers: int = -1  # -1: chosen from the CPU count
    seed_parity: bool = False
    pca: int = 0  # fitted heads (logreg, svm, mlp): first reduce features to this many principal components; 0: none
    shots: int = 0  # 0: exact expectation values; N: estimated from N measurements, gradients by parameter shift
    noise: str = ""  # built-in engine: "depolarizing=0.01,readout=0.02", see NoiseModel.parse
    device_options: str = ""  # PennyLane devices: JSON keyword arguments, e.g. {"noise_model": "FakeManilaV2"}
    holdout: float = 0.0  # carve this stratified fraction of train into a held-out test split (when no test/)
    holdout_list: str = ""  # or hold out the files a previous run's holdout.json lists
    tensorboard: bool = False  # also write TensorBoard event files into the run directory
    mlflow: str = ""  # also log to MLflow: "" off, "local" (OUT/mlflow.db, SQLite) or a tracking URI
    threads: int = 0  # intra-op CPU threads of training steps; 0: by the step's size (runtime.threads_for)

    def validate(self) -> TrainConfig:
        """Refuse settings outside their range, naming the allowed range, and names that do not exist."""
        self.check_ranges()
        self._check_names()
        if not self.data:
            raise InputError("no data given: pass --data DIR (a folder with train/ and val/) or a dataset name "
                             "(--data hymenoptera: downloaded once into the cache; --data digits: written there)")
        if self.holdout_list:
            from qtransfer.data.splits import read_holdout

            read_holdout(Path(self.holdout_list))
        return self

    def check_ranges(self) -> None:
        """Refuse numbers outside their range, naming the allowed range (also for a run's saved settings)."""
        checks = [
            (self.n_qubits >= 1, f"n_qubits must be >= 1, got {self.n_qubits}"),
            (self.n_qubits <= MAX_QUBITS, f"n_qubits must be <= {MAX_QUBITS} (2^n amplitudes), got {self.n_qubits}"),
            (self.depth >= 0, f"depth must be >= 0, got {self.depth}"),
            (self.depth <= MAX_DEPTH, f"depth must be <= {MAX_DEPTH}, got {self.depth}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.lr < math.inf, f"learning rate must be finite, got {self.lr}"),
            (0 <= self.weight_decay < math.inf, f"weight decay must be finite and >= 0, got {self.weight_decay}"),
            (self.step_size >= 1, f"step size must be >= 1, got {self.step_size}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.q_delta >= 0, f"q_delta must be >= 0, got {self.q_delta}"),
            (self.q_delta < math.inf, f"q_delta must be finite, got {self.q_delta}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}"),
            (self.num_workers >= -1, f"workers must be >= 0 (or -1 for automatic), got {self.num_workers}"),
            (self.pca >= 0, f"pca must be >= 0 (0: no reduction), got {self.pca}"),
            (self.shots >= 0, f"shots must be >= 0 (0: exact expectation values), got {self.shots}"),
            (0 <= self.holdout < 1, f"holdout must be a fraction in [0, 1), got {self.holdout}"),
            (self.threads >= 0, f"threads must be >= 0 (0: automatic), got {self.threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def _check_names(self) -> None:
        """Backbone, head, template and backend must exist, and the circuit must fit in memory. Nothing is built
        beyond the backend's settings: no device is made and no service contacted."""
        from qtransfer.models.backbones import get_spec
        from qtransfer.models.heads import HEADS
        from qtransfer.quantum.backends import PennyLaneBackend, get_backend
        from qtransfer.quantum.circuits import make_circuit
        from qtransfer.quantum.memory import check_fits

        get_spec(self.backbone)
        check = getattr(HEADS.lookup(self.head), "check_settings", None)
        if check is not None:  # a head's own early checks (a kernel head's embedding and PCA)
            check(self)
        if self.seed_parity and self.fitted_head():
            raise InputError(f"--seed-parity trains the tutorial's way, by epochs; head {self.head!r} is fitted in one "
                             f"call: drop --seed-parity or use --head quantum, classical or linear")
        if self.head != "quantum":
            return
        circuit = make_circuit(self.template, self.n_qubits, self.depth, self.entangle)
        backend = get_backend(self.head_options()["backend"])
        if isinstance(backend, PennyLaneBackend):
            backend.check_available()  # a missing device or plugin fails here, naming its package
        else:
            density = backend.noise is not None and backend.noise.channels
            check_fits(circuit, self.batch_size, self._device_kind(), density=density)

    def fitted_head(self) -> bool:
        """Whether the head is fitted in one call (a scikit-learn baseline or a quantum kernel), not trained by epochs."""
        from qtransfer.models.fitted import FittedHead
        from qtransfer.models.heads import HEADS

        factory = HEADS.lookup(self.head)
        return isinstance(factory, type) and issubclass(factory, FittedHead)

    def _device_kind(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def workers(self) -> int:
        """Image-decoding worker processes: the setting, or for -1 none on a 2-core machine (the backbone
        needs both cores; decoding is a tenth of the work) and up to 4 on larger ones."""
        if self.num_workers >= 0:
            return self.num_workers
        return max(0, min(4, (os.cpu_count() or 1) // 2 - 1))

    def head_options(self) -> dict[str, Any]:
        """Keyword arguments for create_head (the backend built with its shots, noise and device options)."""
        options: dict[str, Any] = {"n_qubits": self.n_qubits, "depth": self.depth, "template": self.template,
                                   "embedding": self.embedding, "q_delta": self.q_delta, "backend": self.backend,
                                   "pca": self.pca, "shots": self.shots, "noise": self.noise,
                                   "entangle": self.entangle}
        if self.head == "quantum" and (self.shots or self.noise or self.device_options):
            from qtransfer.quantum.backends import make_backend

            options["backend"] = make_backend(self.backend, self.shots, self.noise, self.parsed_device_options(),
                                              seed=self.seed)
        return options

    def parsed_device_options(self) -> dict[str, Any]:
        """--device-options as a dict."""
        if not self.device_options:
            return {}
        try:
            value = json.loads(self.device_options)
        except json.JSONDecodeError as err:
            raise InputError(f"--device-options must be a JSON object, e.g. '{{\"shots\": 1024}}': {err}") from None
        if not isinstance(value, dict):
            raise InputError(f"--device-options must be a JSON object, got {self.device_options!r}")
        return value

    def to_json(self) -> str:
        """The settings as indented JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the settings") -> TrainConfig:
        """Settings from a dict, refusing unknown keys and values of the wrong type (`source` names where they are)."""
        if not isinstance(values, dict):
            raise InputError(f"{source} must be a table of settings, got {type(values).__name__}")
        defaults = cls()
        if "embedding" not in values and values.get("head") in KERNEL_HEADS:  # written when --template named it
            values = {**values, "embedding": values.get("template", defaults.embedding), "template": defaults.template}
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown settings {sorted(unknown)} in {source}; known: {sorted(known)}")
        converted = {}
        for key, value in values.items():
            kind = type(getattr(defaults, key))
            if kind is float and type(value) is int:
                value = float(value) if abs(value) <= 2**1000 else value  # a bigger one stays an int: refused
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise InputError(f"setting {key!r} in {source} must be {KINDS[kind]}, got "
                                 f"{json.dumps(value, default=str)}")
            converted[key] = value
        return cls(**converted)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Settings from a run directory's config.json."""
        path = Path(path)
        values = read_json(path, f"is {path.parent} a qtransfer run directory?", "start a new run")
        return cls.from_dict(values, str(path))


def read_json(path: Path, missing: str, damaged: str) -> Any:
    """The JSON in `path`; a missing or unreadable file is a user error ending with `missing` or `damaged` advice."""
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not UTF-8, not JSON, or a number too long to read
        raise InputError(f"{path} is not readable JSON ({err}); it was damaged: {damaged}") from None


class SettingsFile:
    """For settings dataclasses whose field `config` is a TrainConfig: written as one flat table keyed by the
    command's own flag names (so the file is a valid `--config` file of that command) and read back."""

    config: TrainConfig
    PER_JOB: ClassVar[tuple[str, ...]] = ("head", "seed_parity")  # set per job by the command, not flags of it
    KEYS: ClassVar[dict[str, str]] = {}  # own fields written under their flag's name: field -> key

    def to_json(self) -> str:
        """The settings as indented JSON: the config's fields, then the command's own under their flags' names."""
        config = {k: v for k, v in asdict(self.config).items() if k not in self.PER_JOB}
        own = {self.KEYS.get(k, k): v for k, v in asdict(self).items() if k != "config"}  # type: ignore[call-overload]
        return json.dumps({**config, **own}, indent=2)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Settings from a JSON file written by to_json (or, from before flat files, with the config nested)."""
        path = Path(path)
        values = cls.upgraded(read_json(path, "start anew", "start anew"))
        own = {cls.KEYS.get(f.name, f.name): f.name for f in fields(cls) if f.name != "config"}  # type: ignore[arg-type]
        allowed = {*own, *own.values(), *(f.name for f in fields(TrainConfig)), "config"}
        if not isinstance(values, dict) or set(values) - allowed:
            raise InputError(f"{path} does not hold the settings qtransfer writes there ({sorted(own)} and the "
                             f"training settings); it was damaged or replaced: start anew")
        nested = values.pop("config", None)
        config = nested if nested is not None else {k: values.pop(k) for k in list(values) if k not in own}
        settings = {own.get(k, k): v for k, v in values.items()}
        return cls(TrainConfig.from_dict(config, str(path)), **settings)  # type: ignore[call-arg]

    @classmethod
    def upgraded(cls, values: Any) -> Any:
        """A settings file's values as this version names them (a settings class that renamed a field says how)."""
        return values

    def resumed(self, changes: ResumeChanges) -> Self:
        """These saved settings with `changes` applied to their TrainConfig; a change to any other is refused."""
        own = {k: v for k, v in changes.values.items() if k not in TRAIN_FIELDS}
        changes.check(asdict(self), own)  # type: ignore[call-overload]
        config = changes.apply(self.config)
        return replace(self, config=config)  # type: ignore[type-var]


TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))

# What may change when a run is resumed: where and how long it runs, and what watches it; never what it computes.
RESUMABLE = ("epochs", "device", "num_workers", "cache_dir", "no_cache", "threads", "tensorboard", "mlflow")


@dataclass(frozen=True)
class ResumeChanges:
    """Settings given anew for a resumed run (name -> value; TrainConfig fields or an experiment's own), and the
    flag each was given by, to name it in a refusal (default: the setting's name)."""

    values: Mapping[str, Any] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)

    def apply(self, saved: TrainConfig) -> TrainConfig:
        """The saved settings with the given ones of RESUMABLE; any other given TrainConfig setting must equal the
        saved one."""
        given = {k: v for k, v in self.values.items() if k in TRAIN_FIELDS}
        self.check(asdict(saved), {k: v for k, v in given.items() if k not in RESUMABLE})
        resumed = replace(saved, **{k: v for k, v in given.items() if k in RESUMABLE})
        resumed.check_ranges()
        return resumed

    def check(self, saved: Mapping[str, Any], given: Mapping[str, Any]) -> None:
        """Refuse the first given setting that differs from its saved value, in one line naming its flag."""
        for name, value in given.items():
            if name in saved and not _same(value, saved[name]):
                flag = self.flags.get(name, name)
                allowed = ", ".join(self.flags.get(k, k) for k in RESUMABLE)
                raise InputError(
                    f"{flag} {_shown(value)} differs from the resumed run's {_shown(saved[name])}; a resumed run "
                    f"keeps its settings except {allowed}: drop {flag}, or start a new run without --resume")


def _same(given: Any, saved: Any) -> bool:
    if isinstance(given, tuple):
        given = list(given)
    if isinstance(given, Path):
        given = str(given)
    return bool(given == saved)


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)
