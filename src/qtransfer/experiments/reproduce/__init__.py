"""The paper's experiments, each a command that writes its figures, a results table and a report section:
`qtransfer reproduce NAME`. One module per experiment; each registers itself in `registry`."""
from __future__ import annotations

import json
import shlex
import time
from datetime import datetime
from pathlib import Path

from qtransfer.experiments.reproduce import (  # noqa: F401  (register)
    ants_bees,
    baselines,
    benchmark,
    cifar,
    circuit_sweep,
    qc,
    qq,
    spirals,
    width,
)
from qtransfer.experiments.reproduce.registry import (
    EXPERIMENTS,
    ORDER,
    ReproduceOptions,
    Reproduction,
)
from qtransfer.report.document import section, update_report
from qtransfer.storage import atomic_write_text

__all__ = ["EXPERIMENTS", "ReproduceOptions", "Reproduction", "command_line", "reproduce"]


def reproduce(name: str, options: ReproduceOptions, report: Path | None = None) -> Reproduction:
    """Run one experiment into a new directory; write reproduction.md there and, if asked, into `report`."""
    experiment = EXPERIMENTS.lookup(name)
    started = time.perf_counter()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(options.out) / f"{stamp}-reproduce-{name}"
    result = experiment(options, run_dir)
    result.seconds = time.perf_counter() - started
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "reproduction.md", section(result, options.command, image_dir=None))
    atomic_write_text(run_dir / "reproduction.json", json.dumps(
        {"name": name, "seconds": result.seconds, "command": options.command, **result.results}, indent=2))
    if report is not None:
        update_report(Path(report), result, options.command, ORDER, list(EXPERIMENTS))
    return result


def command_line(name: str, options: ReproduceOptions, report: Path | None) -> str:
    """The shell command equivalent to these options."""
    parts = ["qtransfer", "reproduce", name]
    for flag, value, default in [
        ("--data", options.data, None), ("--epochs", options.epochs, None), ("--steps", options.steps, None),
        ("--augment-views", options.augment_views, 10), ("--cubic-phase", options.cubic_phase, "exact"),
    ]:
        if value is not None and value != default:
            parts += [flag, str(value)]
    if options.cifar:
        parts += ["--cifar", options.cifar]
    if options.seeds is not None:
        parts += ["--seed-list", *map(str, options.seeds)]
    if options.backbones:
        parts += ["--backbones", *options.backbones]
    if options.heads:
        parts += ["--heads", *options.heads]
    if report is not None:
        parts += ["--report", str(report)]
    return shlex.join(parts)
