"""The settings of compare, sweep, cv, noise-scan and reproduce, each field declared once (flag, help, rule); light
to import, so that the command line builds its flags from them before torch is loaded."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qtransfer.config import DEFAULT_SEED, MAX_QUBITS, MAX_SEED, SettingsFile, TrainConfig
from qtransfer.errors import InputError
from qtransfer.settings_schema import (
    Flag,
    Interval,
    ListOf,
    Optional,
    StrOptions,
    Text,
    check_ranges,
    inherited,
    nested,
    setting,
)

if TYPE_CHECKING:
    from qtransfer.quantum.fock_gates import CubicPhase

SEED = Interval(int, 0, MAX_SEED)
NO_SEEDS = "no seeds: pass --seeds N (a count) or --seed-list 1 2 3"
HEAD_SPECS = ("heads by name, with settings: quantum classical linear quantum:depth=2,qubits=6 quantum:entangle=false "
              "fourier")


def five_seeds() -> list[int]:
    """The default seeds of a comparison or sweep: five, counting up from the default --seed."""
    return list(range(DEFAULT_SEED, DEFAULT_SEED + 5))


def check_tune_seeds(tune_seeds: int, seeds: Sequence[int]) -> None:
    """Refuse a --tune-seeds that is not between 1 and the number of seeds."""
    if not 1 <= tune_seeds <= len(seeds):
        raise InputError(f"--tune-seeds must be between 1 and the number of seeds ({len(seeds)}), got {tune_seeds}")


def tune_flag() -> Any:
    """The --tune field of compare and cv."""
    return field(default=False, metadata=setting(
        "--tune", "search every head's declared space (8 configurations each) by the same 5-fold inner CV of its "
                  "training part, then train the chosen one", Flag()))


def tune_seeds_field() -> Any:
    """The --tune-seeds field of compare and cv (at most the number of seeds: tuning.check_tune_seeds)."""
    return field(default=1, metadata=setting(
        "--tune-seeds", "--tune: the first this many seeds score each configuration", Interval(int, 1, None)))


@dataclass
class CompareSettings(SettingsFile):
    """What a comparison runs: the base training settings, the heads, the seeds, augmented views."""

    config: TrainConfig = field(metadata=nested())
    heads: list[str] = field(default_factory=lambda: ["quantum", "classical", "linear"], metadata=setting(
        "--heads", HEAD_SPECS, ListOf(Text()), metavar="HEAD"))
    seeds: list[int] = field(default_factory=five_seeds, metadata=setting(
        "--seed-list", "these seeds instead of --seeds", ListOf(SEED, empty=NO_SEEDS), key="seed_list",
        metavar="SEED"))
    augment_views: int = field(default=0, metadata=setting(
        "--augment-views", "also train every head on K cached augmented views of each training image",
        Interval(int, 0, None), metavar="K"))
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "balanced_accuracy"], metadata=setting(
        "--metrics", "held-out columns when there is a test split: accuracy balanced_accuracy roc_auc",
        ListOf(Text()), metavar="NAME"))
    tune: bool = tune_flag()  # search every head's space by inner CV of train first (tuning.py)
    tune_seeds: int = tune_seeds_field()


@dataclass
class SweepSettings(SettingsFile):
    """The base settings, the depths and qubit counts to visit, the seeds, and whether to add classical heads."""

    config: TrainConfig = field(metadata=nested())
    depths: list[int] = field(default_factory=lambda: list(range(11)), metadata=setting(
        "--depths", "depths at --qubits (0 keeps only the embedding)", ListOf(Interval(int, 0, None)), metavar="D"))
    qubits: list[int] = field(default_factory=lambda: list(range(2, 13)), metadata=setting(
        "--qubit-counts", "qubit counts at --depth", ListOf(Interval(int, 1, MAX_QUBITS)), key="qubit_counts",
        metavar="Q"))
    seeds: list[int] = field(default_factory=five_seeds, metadata=setting(
        "--seed-list", "these seeds instead of --seeds", ListOf(SEED, empty=NO_SEEDS), key="seed_list",
        metavar="SEED"))
    no_classical: bool = field(default=False, metadata=setting(
        "--no-classical", "leave out the classical heads of the same widths", Flag()))

    @classmethod
    def upgraded(cls, values: Any) -> Any:
        """Before flat settings files, a sweep saved `classical`, the opposite of `no_classical`."""
        if isinstance(values, dict) and isinstance(values.get("classical"), bool):
            values["no_classical"] = not values.pop("classical")
        return values

    def heads(self) -> list[str]:
        """Head specs of every point; a point on both axes is listed once."""
        c = self.config
        points = [(c.n_qubits, d) for d in self.depths] + [(q, c.depth) for q in self.qubits]
        quantum = [f"quantum:qubits={q},depth={d}" for q, d in dict.fromkeys(points)]
        if self.no_classical:
            return quantum
        return quantum + [f"classical:qubits={q}" for q in dict.fromkeys([*self.qubits, c.n_qubits])]


@dataclass
class CVSettings(SettingsFile):
    """Heads, folds, seeds, what is pooled, and the inner fraction kept for selecting the epoch."""

    config: TrainConfig = field(metadata=nested())
    heads: list[str] = field(default_factory=lambda: ["quantum"], metadata=setting(
        "--heads", "heads", ListOf(Text()), metavar="HEAD"))
    folds: int = field(default=5, metadata=setting("--folds", "number of folds", Interval(int, 2, None)))
    keep_val: bool = field(default=False, metadata=setting(  # else train + val pooled
        "--keep-val", "pool train/ only and leave val/ aside (default: pool both)", Flag()))
    inner_fraction: float = field(default=0.2, metadata=setting(
        "--inner-fraction", "share of each fold's training part that selects the epoch",
        Interval(float, 0, 1, closed="neither"), label="inner selection fraction"))
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "balanced_accuracy", "roc_auc"], metadata=setting(
        "--metrics", "columns of the table: accuracy balanced_accuracy precision recall f1 roc_auc confusion",
        ListOf(Text()), metavar="NAME"))
    seeds: list[int] = field(default_factory=list, metadata=setting(  # each head's initialisation and batch order
        "--seed-list", "these seeds instead of --seeds (none: --seed)", ListOf(SEED, min_size=0), key="seed_list",
        metavar="SEED"))
    tune: bool = tune_flag()  # search every head's space by inner CV of each outer fold's training part (tuning.py)
    tune_seeds: int = tune_seeds_field()
    margin: float = field(default=0.01, metadata=setting(
        "--margin", "equivalence margin of the scorecard's TOST, in accuracy (0.01: one point)",
        Interval(float, 0, 1, closed="neither")))

    def seed_list(self) -> list[int]:
        """The seeds every head is trained with on every fold."""
        return list(self.seeds) or [self.config.seed]

    def check(self) -> None:
        """Refuse bad settings before any work."""
        from qtransfer.experiments.head_specs import parse_head
        from qtransfer.training.metrics import METRIC_NAMES

        unknown = set(self.metrics) - set(METRIC_NAMES)
        if unknown:
            raise InputError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}")
        check_ranges(self)
        check_tune_seeds(self.tune_seeds, self.seed_list())
        for h in self.heads:
            parse_head(h).config(self.config).validate()


@dataclass
class ScanSettings:
    """Which noise channel and strengths, which shot counts, how many repetitions of each shot count."""

    channel: str = field(default="depolarizing", metadata=setting(  # quantum.density.CHANNELS
        "--channel", "depolarizing, amplitude_damping, phase_damping, bit_flip or phase_flip, after every gate",
        Text()))
    strengths: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
                                   metadata=setting("--strengths", "channel strengths", ListOf(Interval(float, 0, 1)),
                                                    metavar="P"))
    shots: list[int] = field(default_factory=lambda: [16, 64, 256, 1024, 4096], metadata=setting(
        "--shots-list", "shot counts", ListOf(Interval(int, 1, None)), key="shots_list", metavar="N"))
    repeats: int = field(default=5, metadata=setting(
        "--repeats", "repetitions of each shot count", Interval(int, 1, None)))
    readout: float = field(default=0.0, metadata=setting(
        "--readout", "readout error added to every noise point", Interval(float, 0, 1, special={0: "none"})))

    def check(self) -> None:
        """Refuse unknown channels and out-of-range values."""
        from qtransfer.quantum.density import CHANNELS
        from qtransfer.registry import unknown_name

        if self.channel not in CHANNELS:
            raise unknown_name("noise channel", self.channel, CHANNELS)
        check_ranges(self)


@dataclass
class ReproduceOptions:
    """Settings shared by the reproductions; None means the experiment's own default (the paper's)."""

    data: str | None = field(default=None, metadata=setting(
        "--data", "dataset folder (ants-bees: hymenoptera_data; cifar: CIFAR-10 root; qc, qq: the folder with the "
                  "paper's pretrained .npy files, else they are fetched and cached)", Optional(Text())))
    out: str = inherited(TrainConfig, "out")
    seeds: list[int] | None = field(default=None, metadata=setting(
        "--seed-list", "seeds (default: the experiment's five)", Optional(ListOf(SEED)), key="seed_list",
        metavar="SEED"))
    epochs: int | None = field(default=None, metadata=setting(
        "--epochs", "epochs (default: the paper's)", Optional(Interval(int, 1, None))))
    steps: int | None = field(default=None, metadata=setting(
        "--steps", "spirals, qc, qq: training steps (default: the paper's)", Optional(Interval(int, 1, None))))
    augment_views: int = field(default=10, metadata=setting(
        "--augment-views", "ants-bees: also train on K augmented views per training image",
        Interval(int, 0, None, special={0: "off"}), metavar="K"))
    backbones: list[str] | None = field(default=None, metadata=setting(
        "--backbones", "ants-bees: backbones (default: resnet18 where its weights are present, efficientnet_lite0); "
                       "baselines: its one backbone (default: efficientnet_lite0)", Optional(ListOf(Text())),
        metavar="NAME"))
    heads: list[str] | None = field(default=None, metadata=setting(
        "--heads", "baselines: the heads (default: every quantum, classical and fitted head, and svm:pca=4)",
        Optional(ListOf(Text())), metavar="HEAD"))
    cache_dir: str = inherited(TrainConfig, "cache_dir")
    device: str = inherited(TrainConfig, "device")
    num_workers: int = inherited(TrainConfig, "num_workers")
    command: str = field(default="", metadata=setting(None, "the command line that ran, for the report", Text()))
    progress: bool = field(default=True, metadata=setting(None, "progress bars (off: --quiet)", Flag()))
    cubic_phase: CubicPhase = field(default="exact", metadata=setting(  # quantum.fock_gates conventions
        "--cubic-phase", "qq: the CV cubic phase gate of its earlier rows: exact (the gate's true elements below the "
                         "cutoff) or truncated (exp of the truncated x^3, Strawberry Fields' and the paper's); its "
                         "sections (a)-(c) run both", StrOptions(("exact", "truncated"))))
    cifar: str | None = field(default=None, metadata=setting(
        "--cifar", "benchmark: a CIFAR-10 root (with cifar-10-batches-py/), adding the paper's dogs/cats and "
                   "planes/cars", Optional(Text()), metavar="DIR"))
