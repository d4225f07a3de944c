"""One dataclass holds every setting of a training run, with the reference tutorial's defaults."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from qtransfer.errors import InputError, MissingFileError
from qtransfer.settings_schema import Flag, Interval, Text, WrongType, check_ranges, keys, options, setting

if TYPE_CHECKING:
    from typing_extensions import Self

MAX_QUBITS = 50  # a state of 2^50 amplitudes is 8 PiB: more than any machine simulates
MAX_DEPTH = 10_000
MAX_SEED = 2**32 - 1  # what every generator takes (numpy's and scikit-learn's included)
DEFAULT_SEED = 42  # the tutorial's
KERNEL_HEADS = ("qkernel", "projected_qkernel")  # their embedding was their `template` before it had its own name


@dataclass
class TrainConfig:
    """Settings of one training run; the CLI flags map onto these fields, and config.json holds them."""

    data: str = field(default="", metadata=setting(
        "--data", "folder with train/ and val/ (one sub-folder of images per class), or a dataset name: "
                  "hymenoptera (downloaded and checked once) or digits (written), into <cache>/datasets/", Text()))
    backbone: str = field(default="efficientnet_lite0", metadata=setting(  # its ImageNet weights install with it
        "--backbone", "pretrained network A (see `qtransfer info`); resnet18 is the paper's (its weights are "
                      "downloaded)", Text()))
    weights: str = field(default="default", metadata=setting(
        "--weights", "'default' (torchvision cache, then download), a weights file, or 'none' (random)", Text()))
    head: str = field(default="quantum", metadata=setting(
        "--head", "network B: quantum, classical, linear; fitted by inner CV: logreg, svm, mlp, qkernel, "
                  "projected_qkernel, fourier (a classical control: the circuit's spectrum as Fourier features); the "
                  "quantum head without entanglement: --no-entangle", Text()))
    n_qubits: int = field(default=4, metadata=setting(
        "--qubits", "qubits of the circuit (also the width of the classical head)", Interval(int, 1, MAX_QUBITS)))
    depth: int = field(default=6, metadata=setting(
        "--depth", "variational layers of the circuit", Interval(int, 0, MAX_DEPTH)))
    template: str = field(default="tutorial", metadata=setting(  # quantum.circuits.TEMPLATES
        "--template", "the quantum head's circuit: tutorial, strongly_entangling, basic_entangler, ring_cz", Text()))
    entangle: bool = field(default=True, metadata=setting(  # off: the circuit without its multi-qubit gates
        "--no-entangle", "a control: the circuit with its entangling (multi-qubit) gates removed", Flag()))
    embedding: str = field(default="tutorial", metadata=setting(  # quantum.embeddings.EMBEDDINGS
        "--embedding", "the kernel heads' (qkernel, projected_qkernel) feature map: tutorial, iqp", Text()))
    backend: str = field(default="torch", metadata=setting(
        "--backend", "'torch' (built-in engine) or 'pennylane:<device>'", Text()))
    q_delta: float = field(default=0.01, metadata=setting(
        "--q-delta", "spread of the initial circuit weights", Interval(float, 0, None)))
    epochs: int = field(default=30, metadata=setting("--epochs", "training epochs", Interval(int, 1, None)))
    batch_size: int = field(default=4, metadata=setting(
        "--batch-size", "batch size", Interval(int, 1, None), label="batch size"))
    lr: float = field(default=4e-4, metadata=setting(
        "--lr", "Adam learning rate", Interval(float, 0, None, closed="right"), label="learning rate"))
    weight_decay: float = field(default=0.0, metadata=setting(
        "--weight-decay", "Adam's L2 penalty on the trained parameters", Interval(float, 0, None),
        label="weight decay"))
    step_size: int = field(default=10, metadata=setting(
        "--step-size", "StepLR: epochs between learning-rate cuts", Interval(int, 1, None), label="step size"))
    gamma: float = field(default=0.1, metadata=setting(
        "--gamma", "StepLR: factor of each cut", Interval(float, 0, 1, closed="right")))
    seed: int = field(default=DEFAULT_SEED, metadata=setting("--seed", "random seed", Interval(int, 0, MAX_SEED)))
    device: str = field(default="auto", metadata=setting(
        "--device", "'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...", Text()))
    out: str = field(default="runs", metadata=setting("--out", "where run directories are made", Text()))
    name: str = field(default="", metadata=setting("--name", "run name (the directory is <time>-<name>)", Text()))
    cache_dir: str = field(default="", metadata=setting(
        "--cache-dir", "feature cache folder (default $QTRANSFER_CACHE or ~/.cache/qtransfer)", Text()))
    no_cache: bool = field(default=False, metadata=setting(
        "--no-cache", "do not read or write the feature cache", Flag()))
    num_workers: int = field(default=-1, metadata=setting(
        "--workers", "image-decoding worker processes", Interval(int, 0, None, special={-1: "from the CPU count"}),
        label="workers"))
    seed_parity: bool = field(default=False, metadata=setting(
        "--seed-parity", "the tutorial's way: no cache, backbone in train() mode every step, circuit per sample",
        Flag()))
    pca: int = field(default=0, metadata=setting(  # fitted heads (logreg, svm, mlp) only
        "--pca", "fitted heads: first reduce the features to this many principal components",
        Interval(int, 0, None, special={0: "no reduction"})))
    shots: int = field(default=0, metadata=setting(  # N: estimated from N measurements, gradients by parameter shift
        "--shots", "measurements per expectation value; training then uses parameter shifts",
        Interval(int, 0, None, special={0: "exact expectation values"})))
    noise: str = field(default="", metadata=setting(  # see NoiseModel.parse
        "--noise", "built-in engine noise, e.g. 'depolarizing=0.01,amplitude_damping=0.02@CNOT,readout=0.03'",
        Text()))
    device_options: str = field(default="", metadata=setting(
        "--device-options", "PennyLane device options as JSON, e.g. '{\"noise_model\": \"FakeManilaV2\"}'", Text()))
    holdout: float = field(default=0.0, metadata=setting(  # used when there is no test/
        "--holdout", "hold out this stratified fraction of train as a test split, when there is no test/",
        Interval(float, 0, 1, closed="left")))
    holdout_list: str = field(default="", metadata=setting(
        "--holdout-list", "hold out the files listed in a run's holdout.json (to compare runs)", Text()))
    tensorboard: bool = field(default=False, metadata=setting(
        "--tensorboard", "also write TensorBoard event files into the run directory (then: tensorboard --logdir OUT)",
        Flag()))
    mlflow: str = field(default="", metadata=setting(  # "" off, "local" (OUT/mlflow.db, SQLite) or a tracking URI
        "--mlflow", "also log to MLflow: to the tracking URI, or without one ('local') to the SQLite database "
                    "OUT/mlflow.db (then: mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db)", Text(),
        const="local", metavar="URI"))
    threads: int = field(default=0, metadata=setting(
        "--threads", "CPU threads of each training step (one for small heads, every core for large circuits)",
        Interval(int, 0, None, special={0: "automatic"})))

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
        check_ranges(self)

    def _check_names(self) -> None:
        """Backbone, head, template and backend must exist, and the circuit must fit in memory. Nothing is built
        beyond the backend's settings: no device is made and no service contacted."""
        from qtransfer.models.backbones import get_spec
        from qtransfer.models.heads import HEADS
        from qtransfer.quantum.backends import PennyLaneBackend, TorchBackend, get_backend
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
        elif isinstance(backend, TorchBackend):
            density = backend.noise is not None and bool(backend.noise.channels)
            check_fits(circuit, self.batch_size, self._device_kind(), density=density)

    def fitted_head(self) -> bool:
        """Whether the head is fitted in one call (a scikit-learn baseline or a quantum kernel), not by epochs."""
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
        rules = {o.name: o.setting.rule for o in options(cls)}
        converted = {}
        for key, value in values.items():
            try:
                converted[key] = rules[key].convert(value)
            except WrongType as wanted:
                raise InputError(f"setting {key!r} in {source} must be {wanted}, got "
                                 f"{json.dumps(value, default=str)}") from None
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
    command's own setting keys (so the file is a valid `--config` file of that command) and read back."""

    config: TrainConfig
    PER_JOB: ClassVar[tuple[str, ...]] = ("head", "seed_parity")  # set per job by the command, not flags of it

    def to_json(self) -> str:
        """The settings as indented JSON: the config's fields, then the command's own under their keys."""
        config = {k: v for k, v in asdict(self.config).items() if k not in self.PER_JOB}
        renamed = keys(type(self))
        own = {renamed.get(k, k): v for k, v in asdict(self).items() if k != "config"}  # type: ignore[call-overload]
        return json.dumps({**config, **own}, indent=2)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Settings from a JSON file written by to_json (or, from before flat files, with the config nested)."""
        path = Path(path)
        values = cls.upgraded(read_json(path, "start anew", "start anew"))
        own = {o.key: o.name for o in options(cls)}
        allowed = {*own, *own.values(), *(f.name for f in fields(TrainConfig)), "config"}
        if not isinstance(values, dict) or set(values) - allowed:
            raise InputError(f"{path} does not hold the settings qtransfer writes there ({sorted(own)} and the "
                             f"training settings); it was damaged or replaced: start anew")
        nested = values.pop("config", None)
        config = nested if nested is not None else {k: values.pop(k) for k in list(values) if k not in own}
        settings: dict[str, Any] = {own.get(str(k), str(k)): v for k, v in values.items()}
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
