"""Accuracy against circuit depth and against qubit count, each point over seeds."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from qtransfer import distributed
from qtransfer.config import ResumeChanges, SettingsFile, TrainConfig
from qtransfer.errors import InputError
from qtransfer.experiments.compare import CompareSettings, run_comparison
from qtransfer.experiments.runner import resumable
from qtransfer.report import figures, tables
from qtransfer.storage import atomic_write_text


@dataclass
class SweepSettings(SettingsFile):
    """The base settings, the depths and qubit counts to visit, the seeds, and whether to add classical heads."""

    KEYS: ClassVar[dict[str, str]] = {"qubits": "qubit_counts", "seeds": "seed_list"}

    config: TrainConfig
    depths: list[int] = field(default_factory=lambda: list(range(11)))
    qubits: list[int] = field(default_factory=lambda: list(range(2, 13)))
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44, 45, 46])
    no_classical: bool = False

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


def sweep(settings: SweepSettings, resume: Path | None = None, progress: bool = True,
          changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Fit every point over every seed; write sweep.json, sweep.md and sweep.png. A resumed sweep keeps its saved
    settings, with `changes` applied to those that may change (config.RESUMABLE)."""
    if resume is not None:
        settings = SweepSettings.load(resumable(Path(resume), "sweep_config.json")).resumed(changes or ResumeChanges())
    for name, values, low in (("depths", settings.depths, 0), ("qubits", settings.qubits, 1)):
        if not values or min(values) < low:
            raise InputError(f"sweep {name} must be a non-empty list of integers >= {low}, got {values}")
    compare_settings = CompareSettings(settings.config, settings.heads(), settings.seeds)

    def write(run_dir: Path, result: dict[str, Any]) -> None:
        result["axes"] = axes(settings, result["heads"])
        if not distributed.is_main():
            return
        atomic_write_text(run_dir / "sweep.json", json.dumps(result, indent=2))
        atomic_write_text(run_dir / "sweep.md", tables.sweep_markdown(result))
        figures.plot_sweep(result, run_dir / "sweep.png")

    # sweep_config.json is written first, so an interrupted sweep can be resumed
    return run_comparison(compare_settings, resume, "sweep", progress, write,
                          files={"sweep_config.json": settings.to_json()})


def axes(settings: SweepSettings, heads: dict[str, Any]) -> dict[str, Any]:
    """Per axis the x values and, per head kind, the statistics of each point."""
    c = settings.config

    def point(label: str, x: int) -> dict[str, Any]:
        h = heads[label]
        return {"x": x, "label": label, "best_val_acc": h["best_val_acc"], "final_val_acc": h["final_val_acc"],
                "parameters": h["parameters"]["mean"], "train_s": h["train_s"]["mean"]}

    depth = {"quantum": [point(f"quantum:qubits={c.n_qubits},depth={d}", d) for d in settings.depths]}
    qubits = {"quantum": [point(f"quantum:qubits={q},depth={c.depth}", q) for q in settings.qubits]}
    if not settings.no_classical:
        depth["classical"] = [point(f"classical:qubits={c.n_qubits}", 0)]
        qubits["classical"] = [point(f"classical:qubits={q}", q) for q in settings.qubits]
    return {"depth": {"fixed": {"qubits": c.n_qubits}, **depth}, "qubits": {"fixed": {"depth": c.depth}, **qubits}}
