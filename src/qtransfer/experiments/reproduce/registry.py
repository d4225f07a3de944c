"""The registry of the paper's experiments (`qtransfer reproduce NAME`): what each is given and what it returns.
The experiment modules register themselves here; this module imports none of them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtransfer.experiments.settings import ReproduceOptions
from qtransfer.registry import Registry


@dataclass
class Reproduction:
    """What one experiment produced: a markdown section with its tables, its figures, how long it took."""

    name: str
    title: str
    body: str
    figures: list[Path]
    run_dir: Path
    seconds: float
    results: dict[str, Any] = field(default_factory=dict)


EXPERIMENTS: Registry[Callable[[ReproduceOptions, Path], Reproduction]] = Registry("experiment")
ORDER = ["spirals", "ants-bees", "baselines", "benchmark", "width", "circuit-sweep", "cifar", "qc", "qq"]


def register_experiment(name: str) -> Callable[[Callable[..., Reproduction]], Callable[..., Reproduction]]:
    """Decorator: register `fn(options, run_dir) -> Reproduction` as `qtransfer reproduce NAME`."""
    return EXPERIMENTS.register(name)
