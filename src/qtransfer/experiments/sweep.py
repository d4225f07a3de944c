"""Accuracy against circuit depth and against qubit count, each point over seeds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtransfer import distributed
from qtransfer.config import ResumeChanges
from qtransfer.experiments.compare import run_comparison
from qtransfer.experiments.runner import resumable
from qtransfer.experiments.settings import CompareSettings, SweepSettings
from qtransfer.report import figures, tables
from qtransfer.settings_schema import check_ranges
from qtransfer.storage import atomic_write_text


def sweep(settings: SweepSettings, resume: Path | None = None, progress: bool = True,
          changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Fit every point over every seed; write sweep.json, sweep.md and sweep.png. A resumed sweep keeps its saved
    settings, with `changes` applied to those that may change (config.RESUMABLE)."""
    if resume is not None:
        settings = SweepSettings.load(resumable(Path(resume), "sweep_config.json")).resumed(changes or ResumeChanges())
    check_ranges(settings)
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
