#!/usr/bin/env python
"""Many runs as one: what stacking same-shape heads and one intra-op thread per small step buy.

    python benchmarks/many_runs.py --data ../shared/data/hymenoptera_data --out many_runs.json
    python benchmarks/many_runs.py --data ... --only stack --epochs 3        # quick
    python benchmarks/many_runs.py --data ... --long                         # also reproduce baselines (minutes)

Cases, on the cached ants/bees features (EfficientNet-Lite0, 244 train / 153 val), batch 4:
- stack: K = 1, 5, 20, 100 seeds of the 4-qubit depth-6 quantum head and of its classical twin trained as one
  stacked model (training.fit.fit_group) for --epochs epochs; per model-step microseconds = the group's training
  seconds / (K x steps), and K = 1 solo (the head as a plain module, as `qtransfer train` runs it) beside it.
- crossover: one training step of the quantum head at 8-16 qubits on 1 and on every core, to place
  runtime.PARALLEL_AMPLITUDES.
- commands: wall time of `qtransfer compare --heads quantum` with 1 and with 20 seeds, and of `qtransfer cv` with
  5 folds x {quantum, classical, linear} x 5 seeds (subprocesses, the cache warm).
- busy: one run's train_s (the `train` command's summary) with nothing else running and beside one busy process
  (a Python loop on one core), with the automatic threads and with --threads 2 (torch's default here).
- --long: `qtransfer reproduce baselines --seed-list 42`.
Ratios are taken within one run of this script; say the machine's load when quoting them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from timing import emit, logged

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def stack_case(features, head: str, models: int, epochs: int) -> dict:
    from qtransfer.config import TrainConfig
    from qtransfer.training.fit import FitJob, fit_group

    base = TrainConfig(data="-", head=head, epochs=epochs)
    jobs = [FitJob(replace(base, seed=42 + k), features.train, features.val) for k in range(models)]
    t = time.perf_counter()
    results = fit_group(jobs, len(features.classes), torch.device("cpu"))
    seconds = time.perf_counter() - t
    steps = epochs * -(-len(features.train.labels) // base.batch_size)
    return logged({"case": "stack", "head": head, "models": models, "epochs": epochs, "seconds": seconds,
                   "model_step_us": 1e6 * seconds / (models * steps),
                   "best_val_acc_mean": sum(r.best["val_acc"] for r in results) / models})


def solo_case(features, head: str, epochs: int) -> dict:
    from qtransfer.config import TrainConfig
    from qtransfer.models.heads import build_head
    from qtransfer.training.loop import Loop, chunks

    config = TrainConfig(data="-", head=head, epochs=epochs)
    torch.manual_seed(config.seed)
    model = build_head(config, features.train.features.shape[-1], len(features.classes))
    loop = Loop(model, model.parameters(), config, torch.device("cpu"))
    train, val = features.train, features.val
    seconds = loop.run(lambda: loop.batches(train.features, train.labels), lambda: chunks(val.features, val.labels))
    steps = epochs * -(-len(train.labels) // config.batch_size)
    return logged({"case": "solo", "head": head, "models": 1, "epochs": epochs, "seconds": seconds,
                   "model_step_us": 1e6 * seconds / steps})


def crossover(qubits: list[int], batch: int = 4) -> list[dict]:
    from qtransfer.config import TrainConfig
    from qtransfer.models.heads import build_head
    from qtransfer.runtime import cores, intra_op_threads

    points = []
    for n in qubits:
        config = TrainConfig(data="-", n_qubits=n)
        torch.manual_seed(0)
        head = build_head(config, 64, 2)
        step = _training_step(head, torch.randn(batch, 64), torch.randint(2, (batch,)))
        times = {}
        for threads in sorted({1, cores()}):
            with intra_op_threads(threads):
                step()
                reps = max(3, int(0.5 / max(1e-4, _time(step))))
                times[threads] = min(_time(step) for _ in range(reps))
        points.append(logged({"case": "crossover", "qubits": n, "batch": batch, "amplitudes": 2**n * batch,
                              **{f"step_ms_{k}_threads": 1e3 * v for k, v in times.items()},
                              "speedup_all_cores": times[1] / times[max(times)]}))
    return points


def _training_step(head: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One Adam step of `head` on the batch (x, y), as a function to time."""
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        optimizer.step()

    return step


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def command(argv: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qtransfer", "--quiet", *argv], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})
    return time.perf_counter() - t


def commands(data: str, cache: str, out: str, epochs: int) -> list[dict]:
    common = ["--data", data, "--cache-dir", cache, "--workers", "0", "--out", out, "--epochs", str(epochs)]
    one = command(["compare", *common, "--heads", "quantum", "--seeds", "1"])
    twenty = command(["compare", *common, "--heads", "quantum", "--seeds", "20"])
    points = [logged({"case": "compare", "seeds_1_s": one, "seeds_20_s": twenty, "ratio_20_to_1": twenty / one})]
    cv = command(["cv", *common, "--heads", "quantum", "classical", "linear", "--folds", "5", "--seeds", "5"])
    points.append(logged({"case": "cv", "folds": 5, "heads": 3, "seeds": 5, "seconds": cv}))
    return points


def busy(data: str, cache: str, out: str, epochs: int) -> list[dict]:
    def train_s(threads: int) -> float:
        run_out = tempfile.mkdtemp(dir=out)
        command(["train", "--data", data, "--cache-dir", cache, "--workers", "0", "--out", run_out, "--epochs",
                 str(epochs), "--threads", str(threads)])
        (run,) = Path(run_out).iterdir()
        return json.loads((run / "summary.json").read_text())["timings"]["train_s"]

    quiet = {t: train_s(t) for t in (0, 2)}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1)
        loaded = {t: train_s(t) for t in (0, 2)}
    finally:
        spinner.kill()
    return [logged({"case": "busy", "threads": "auto" if t == 0 else t, "quiet_train_s": quiet[t],
                    "busy_train_s": loaded[t], "ratio_busy_to_quiet": loaded[t] / quiet[t]}) for t in (0, 2)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="hymenoptera_data folder")
    p.add_argument("--cache-dir", default="", help="feature cache (default: qtransfer's)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--models", type=int, nargs="+", default=[1, 5, 20, 100])
    p.add_argument("--only", nargs="+", choices=["stack", "crossover", "commands", "busy"],
                   default=["stack", "crossover", "commands", "busy"])
    p.add_argument("--long", action="store_true", help="also time `reproduce baselines --seed-list 42`")
    p.add_argument("--out")
    args = p.parse_args()

    from qtransfer.config import TrainConfig
    from qtransfer.features.pipeline import load_features
    from qtransfer.runtime import cache_root, cores

    cache = str(cache_root(args.cache_dir))
    features = load_features(TrainConfig(data=args.data, cache_dir=cache, num_workers=0), progress=False)
    torch.set_num_threads(1)  # what the loop chooses for these heads; the crossover case sets its own
    points: list[dict] = []
    scratch = tempfile.mkdtemp(prefix="many-runs-")
    if "stack" in args.only:
        for head in ("quantum", "classical"):
            points.append(solo_case(features, head, args.epochs))
            points += [stack_case(features, head, k, args.epochs) for k in args.models]
    if "crossover" in args.only:
        points += crossover([8, 10, 11, 12, 13, 14, 16])
    if "commands" in args.only:
        points += commands(args.data, cache, scratch, args.epochs)
    if "busy" in args.only:
        points += busy(args.data, cache, scratch, args.epochs)
    if args.long:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qtransfer", "--quiet", "reproduce", "baselines", "--data", args.data,
                        "--cache-dir", cache, "--seed-list", "42", "--out", scratch], check=True,
                       stdout=subprocess.DEVNULL)
        points.append(logged({"case": "reproduce-baselines", "seeds": [42], "seconds": time.perf_counter() - t}))
    ratios = {}
    for head in ("quantum", "classical"):
        solo = next((q for q in points if q["case"] == "solo" and q["head"] == head), None)
        for q in points:
            if solo and q["case"] == "stack" and q["head"] == head:
                ratios[f"{head}_solo_to_stacked_K{q['models']}"] = solo["model_step_us"] / q["model_step_us"]
    emit({"machine": {"cpu_cores": cores(), "python": platform.python_version(), "torch": torch.__version__,
                      "load_average": os.getloadavg()},
          "epochs": args.epochs, "points": points, "ratios": ratios}, args.out)


if __name__ == "__main__":
    main()
