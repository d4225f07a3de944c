"""How a trained head holds up under noise and finite shots: accuracy against noise strength and shot count."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.experiments.settings import ScanSettings
from qtransfer.report.figures import plot_noise_scan
from qtransfer.storage import atomic_write_text
from qtransfer.training.metrics import describe
from qtransfer.training.trained import TrainedModel


def noise_scan(run_dir: Path, settings: ScanSettings, data: Path | None = None, device: str = "auto",
               progress: bool = True) -> dict[str, Any]:
    """Validation accuracy of a run's best head under each noise strength and each shot count; writes
    noise_scan.json and noise_scan.png into the run directory."""
    settings.check()
    started = time.perf_counter()
    config_path = Path(run_dir) / "config.json"
    head = TrainConfig.load(config_path).head if config_path.exists() else "quantum"
    if head != "quantum":
        raise InputError(f"{run_dir} trained a {head!r} head; a noise scan needs a quantum head")
    model = TrainedModel.load(run_dir, device=device, progress=progress)
    split = model.features(data)
    exact = model.simulated(backend="torch", noise="", shots=0).score(split)["accuracy"]
    noise_rows = []
    for p in tqdm(settings.strengths, desc="noise strengths", unit="point", disable=not progress):
        text = ",".join(t for t in (f"{settings.channel}={p}" if p else "",
                                    f"readout={settings.readout}" if settings.readout else "") if t)
        acc = model.simulated(backend="torch", noise=text, shots=0).score(split)["accuracy"]
        noise_rows.append({"p": p, "noise": text, "accuracy": acc})
    shot_rows = []
    for shots in tqdm(settings.shots, desc="shot counts", unit="point", disable=not progress):
        accs = [model.simulated(backend="torch", noise="", shots=shots, seed=seed).score(split)["accuracy"]
                for seed in range(settings.repeats)]
        shot_rows.append({"shots": shots, "accuracies": accs,
                          **{f"accuracy_{k}": v for k, v in describe(accs).items()}})
    result = {
        "run": str(run_dir), "split_images": len(split.labels), "exact_accuracy": exact,
        "channel": settings.channel, "readout": settings.readout, "noise": noise_rows, "shots": shot_rows,
        "repeats": settings.repeats, "seconds": time.perf_counter() - started,
    }
    atomic_write_text(Path(run_dir) / "noise_scan.json", json.dumps(result, indent=2))
    plot_noise_scan(result, Path(run_dir) / "noise_scan.png")
    return result
