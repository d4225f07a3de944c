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
from qtransfer.settings_schema import check_ranges
from qtransfer.settings_schema import options as settings_options
from qtransfer.storage import atomic_write_text

__all__ = ["EXPERIMENTS", "ReproduceOptions", "Reproduction", "command_line", "reproduce"]


def reproduce(name: str, options: ReproduceOptions, report: Path | None = None) -> Reproduction:
    """Run one experiment into a new directory; write reproduction.md there and, if asked, into `report`."""
    check_ranges(options)
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


# The settings a report's command line repeats, in its order: what the experiment computes, not where it ran.
COMMAND_SETTINGS = ("data", "epochs", "steps", "augment_views", "cubic_phase", "cifar", "seeds", "backbones", "heads")


def command_line(name: str, options: ReproduceOptions, report: Path | None) -> str:
    """The shell command equivalent to these options (the settings left at their declared defaults left out)."""
    parts = ["qtransfer", "reproduce", name]
    declared = {o.name: o for o in settings_options(ReproduceOptions)}
    for setting_name in COMMAND_SETTINGS:
        value, flag = getattr(options, setting_name), declared[setting_name].setting.flag
        if value in (None, []) or value == declared[setting_name].default or flag is None:
            continue
        parts += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    if report is not None:
        parts += ["--report", str(report)]
    return shlex.join(parts)
