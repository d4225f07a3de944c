"""Circuit sweep: accuracy against the circuit's depth and width (not in the paper)."""
from __future__ import annotations

import shutil
from pathlib import Path

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.experiments.reproduce.registry import (
    ReproduceOptions,
    Reproduction,
    register_experiment,
)
from qtransfer.experiments.sweep import SweepSettings, sweep


@register_experiment("circuit-sweep")
def _circuit_sweep(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    if not options.data:
        raise InputError("reproduce circuit-sweep needs --data DIR, the hymenoptera_data folder")
    backbone = (options.backbones or ["efficientnet_lite0"])[0]
    seeds = options.seeds if options.seeds is not None else [42, 43, 44, 45, 46]
    config = TrainConfig(data=options.data, backbone=backbone, epochs=options.epochs or 30,
                         cache_dir=options.cache_dir, device=options.device, num_workers=options.num_workers,
                         out=str(run_dir), name="sweep")
    # 11 and 12 qubits cost ~2-3 min per run here (`qtransfer sweep` reaches them); the report stops at 10
    sweep_dir, result = sweep(SweepSettings(config, qubits=list(range(2, 11)), seeds=seeds), progress=options.progress)
    figure = run_dir / "circuit_sweep.png"
    shutil.copyfile(sweep_dir / "sweep.png", figure)
    tables = (sweep_dir / "sweep.md").read_text().split("\n", 1)[1].replace("\n## ", "\n### ")
    body = f"""
Not in the paper: how much the circuit's variational layers and its width matter for ants vs bees, on
{backbone} features, {config.epochs} epochs, seeds {seeds}. Depth 0 keeps only the embedding (Hadamard and
RY(x) on each qubit, measured in Z: ⟨Z_i⟩ = −sin x_i, no entanglement), so that head is the classical map
Linear → tanh·π/2 → −sin → Linear: the ablation that shows whether the trained circuit adds anything.

{tables}
"""
    return Reproduction("circuit-sweep", "Circuit sweep: accuracy against depth and qubit count", body, [figure],
                        run_dir, 0.0, {"axes": result["axes"], "seeds": seeds})
