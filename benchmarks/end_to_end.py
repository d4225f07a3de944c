"""End-to-end timing of `qtransfer train` against the floor and against the tutorial's pipeline; prints JSON.

For each backbone: a 30-epoch run with a cold and with a warm feature cache (subprocesses, wall
time minus the time Python takes to import qtransfer), one inference pass of the backbone over the
397 images (the floor), and one epoch of the tutorial's pipeline (the whole network every step, the
circuit one sample at a time) scaled to 30 epochs. `--accuracy` also trains EfficientNet-Lite0
runs over seeds in default and seed-parity mode and reports best val accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import emit

ROOT = Path(__file__).resolve().parents[1]


def _default_data() -> Path:
    return Path(os.environ.get("QTRANSFER_DATA", ROOT.parent / "shared" / "data")) / "hymenoptera_data"


def _log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def import_seconds() -> float:
    """Wall time of a Python process that only imports what `qtransfer train` imports."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import qtransfer.training.run, qtransfer.cli"], check=True)
    return time.perf_counter() - t


def cli_train(data: Path, backbone: str, weights: str, cache: Path, out: Path, epochs: int, extra: list[str]) -> dict:
    """Wall time of one `qtransfer train` subprocess, and its own timings (from summary.json)."""
    cmd = [sys.executable, "-m", "qtransfer", "train", "--data", str(data), "--backbone", backbone,
           "--weights", weights, "--epochs", str(epochs), "--cache-dir", str(cache), "--out", str(out), *extra]
    before = set(out.glob("*")) if out.exists() else set()
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    (run_dir,) = set(out.glob("*")) - before
    timings = json.loads((run_dir / "summary.json").read_text())["timings"]
    return {"wall": wall, **timings}


def _images(data: Path, transform) -> torch.utils.data.ConcatDataset:
    from qtransfer.data.images import load_splits

    splits = load_splits(data, transform)
    return torch.utils.data.ConcatDataset([splits["train"], splits["val"]])


def floor_seconds(data: Path, backbone_name: str, weights: str | None, workers: int) -> float:
    """One inference pass of the backbone over every image: decoding plus the forward pass."""
    from qtransfer.features.extraction import compute_features
    from qtransfer.models.backbones import create_backbone

    backbone = create_backbone(backbone_name, weights=weights)
    ds = _images(data, backbone.transform)
    t = time.perf_counter()
    compute_features(backbone, ds, torch.device("cpu"), batch_size=32, num_workers=workers)
    return time.perf_counter() - t


def tutorial_epoch_seconds(data: Path, backbone_name: str, weights: str | None, workers: int,
                           steps: int | None) -> float:
    """One epoch of the tutorial's pipeline: backbone in train() mode every step, circuit one sample at a time."""
    from qtransfer.data.images import load_splits
    from qtransfer.models.backbones import create_backbone
    from qtransfer.models.heads import DressedQuantumHead
    from qtransfer.quantum.backends import PennyLaneBackend

    backbone = create_backbone(backbone_name, weights=weights)
    splits = load_splits(data, backbone.transform)
    head = DressedQuantumHead(backbone.out_features, 2, backend=PennyLaneBackend("default.qubit", per_sample=True))
    model = torch.nn.Sequential(backbone, head)
    opt = torch.optim.Adam(head.parameters(), lr=4e-4)
    train = torch.utils.data.DataLoader(splits["train"], batch_size=4, shuffle=True, num_workers=workers)
    val = torch.utils.data.DataLoader(splits["val"], batch_size=4, num_workers=workers)
    n_train = len(train) if steps is None else min(steps, len(train))
    t = time.perf_counter()
    model.train()
    for i, (x, y) in enumerate(train):
        if i == n_train:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    train_s = (time.perf_counter() - t) * len(train) / n_train
    t = time.perf_counter()
    model.eval()
    n_val = len(val) if steps is None else min(steps, len(val))
    with torch.no_grad():
        for i, (x, _) in enumerate(val):
            if i == n_val:
                break
            model(x)
    return train_s + (time.perf_counter() - t) * len(val) / n_val


def timing(data: Path, backbone: str, weights: str, epochs: int, workers: int, tutorial_steps: int | None) -> dict:
    """Cold, warm, floor and tutorial times for one backbone."""
    from qtransfer.config import TrainConfig

    weights_arg = None if weights == "none" else weights
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = ["--workers", str(workers)]
        _log(f"[{backbone}] cold 30-epoch run")
        cold = cli_train(data, backbone, weights, tmp / "cache", tmp / "runs", epochs, extra)
        _log(f"[{backbone}] warm 30-epoch run")
        warm = cli_train(data, backbone, weights, tmp / "cache", tmp / "runs", epochs, extra)
    imports = import_seconds()
    workers = TrainConfig(num_workers=workers).workers()  # -1: as `qtransfer train` chooses
    _log(f"[{backbone}] floor")
    floor = floor_seconds(data, backbone, weights_arg, workers)
    _log(f"[{backbone}] tutorial pipeline epoch")
    tutorial = tutorial_epoch_seconds(data, backbone, weights_arg, workers, tutorial_steps) * epochs
    # "after imports": the run's own clock, from train() to its figures (imports happen before it starts)
    warm_after = warm["total_s"]
    return {
        "weights": weights,
        "seconds": {"cold_run_wall": cold["wall"], "warm_run_wall": warm["wall"], "python_imports": imports,
                    "cold_run_after_imports": cold["total_s"], "warm_run_after_imports": warm_after,
                    "warm_run_training": warm["train_s"], "floor_one_pass": floor,
                    "tutorial_pipeline_30_epochs": tutorial},
        "ratios": {"cold_over_floor": cold["wall"] / floor, "cold_after_imports_over_floor": cold["total_s"] / floor,
                   "tutorial_over_cold": tutorial / cold["wall"]},
        "targets": {
            "cold within 1.5x floor": cold["wall"] / floor <= 1.5,
            "warm under 3 s after imports": warm_after < 3.0,
            "at least 30x faster than tutorial": tutorial / cold["wall"] >= 30,
        },
    }


def accuracy(data: Path, seeds: list[int], epochs: int, workers: int) -> dict:
    """Best val accuracy of EfficientNet-Lite0 runs, default and seed-parity mode, over seeds."""
    from qtransfer.config import TrainConfig
    from qtransfer.training.run import train

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("default", "seed_parity"):
            accs = []
            for seed in seeds:
                _log(f"[accuracy] {mode} seed {seed}")
                config = TrainConfig(data=str(data), backbone="efficientnet_lite0", epochs=epochs, seed=seed,
                                     out=str(Path(tmp) / "runs"), cache_dir=str(Path(tmp) / "cache"),
                                     num_workers=workers, seed_parity=mode == "seed_parity")
                _, summary = train(config)
                accs.append(summary["best_val_acc"])
            out[mode] = {"best_val_acc": accs, "mean": statistics.mean(accs),
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    out["paper_resnet18"] = 0.9673
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=_default_data())
    p.add_argument("--backbones", nargs="*", default=["resnet18:none", "efficientnet_lite0:default"],
                   help="backbone:weights pairs ('none' = random weights, fine for timing)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--workers", type=int, default=-1)
    p.add_argument("--tutorial-steps", type=int, default=None, help="time only this many tutorial steps and scale up")
    p.add_argument("--accuracy", action="store_true", help="also train EfficientNet-Lite0 over seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args()

    result = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
              "epochs": args.epochs, "timing": {}}
    for spec in args.backbones:
        name, _, weights = spec.partition(":")
        result["timing"][name] = timing(args.data, name, weights or "default", args.epochs, args.workers,
                                        args.tutorial_steps)
    if args.accuracy:
        result["accuracy"] = accuracy(args.data, args.seeds, args.epochs, args.workers)
    emit(result, args.out)


if __name__ == "__main__":
    main()
