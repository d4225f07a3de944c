#!/usr/bin/env python
"""Speed of the dressed quantum head: a training epoch per backend, qubit scaling against peers and against the
memory-traffic floor, noisy circuits against default.mixed, a 30-epoch run at 12 qubits.

Prints one JSON document to stdout; progress goes to stderr.

    python benchmarks/head_speed.py                 # full run (about half an hour)
    python benchmarks/head_speed.py --quick         # smoke run: fewer repeats, 4-12 qubits, partial slow epochs
    python benchmarks/head_speed.py --skip epoch noisy train --out head_speed.json

Floor: every scaling worker also times one copy of a batch-32 float32 state of its n qubits (torch copy_ into
a preallocated tensor, best of 20) in the same process, and reports its time as "state_passes" = seconds / floor:
above ~10 qubits a simulation is memory-traffic bound, so passes say how close it runs to the hardware.

Epoch: 244 x 512 seeded features, 2 random classes, Adam(lr=4e-4), cross-entropy, a shuffled
permutation cut into batches (the last one smaller), float32, the 4-qubit depth-6 tutorial head.
Each method is warmed up for a few steps before timing; a method's "seconds" is the median over
its repeats. With --quick the PennyLane methods time only a fraction of the epoch and scale it up
by the number of samples (recorded under "epoch.protocol").

Scaling: one forward + backward step (loss = sum of the expectation values) of the circuit alone,
inputs (batch, n) and depth-6 weights, every (method, n_qubits) in its own subprocess (this script
in its hidden --worker mode) so that its peak RSS, minus a baseline taken after imports and set-up,
is that method's peak memory. The peak is read from VmHWM in /proc/self/status, whose mark is
first reset to the current RSS through /proc/self/clear_refs; ru_maxrss would do elsewhere, but on
Linux a child inherits in it the parent's RSS at fork (~0.8 GB here) and imports leave a transient
peak, both of which hide smaller peaks. Configurations whose estimated memory would not fit are skipped,
workers past --timeout are killed and recorded as "timeout".
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn

import qtransfer
from qtransfer import (
    DressedClassicalHead,
    DressedQuantumHead,
    PennyLaneBackend,
    TorchBackend,
    make_circuit,
)
from qtransfer.quantum.memory import circuit_bytes

N_SAMPLES, N_FEATURES, N_CLASSES = 244, 512, 2
LR = 4e-4
HEAD_QUBITS, DEPTH = 4, 6
EPOCH_BATCHES = (4, 32)
WARMUP_STEPS = 3
SCALING_BATCH = 32
PER_SAMPLE_QUBITS = 16
FULL_CASES = (("tutorial", 8), ("tutorial", 12), ("tutorial", 16), ("tutorial", 20), ("tutorial", 22),
              ("strongly_entangling", 12), ("strongly_entangling", 14), ("strongly_entangling", 16))
QUICK_CASES = (("tutorial", 4), ("tutorial", 8), ("tutorial", 12), ("strongly_entangling", 8))
NOISY_QUBITS = (6, 8, 10)
LIGHTNING_SAMPLES = 4  # lightning.qubit runs one sample at a time: time this many, scale to the batch
TRAIN_QUBITS, TRAIN_EPOCHS = 12, 30
MEMORY_HEADROOM = 0.8  # run a worker only if its estimate is below this share of available memory

EPOCH_METHODS = ("pennylane_per_sample", "pennylane_broadcast", "lightning_adjoint", "qtransfer", "classical")
SLOW_EPOCH_METHODS = ("pennylane_per_sample", "pennylane_broadcast", "lightning_adjoint")
CIRCUIT_METHODS = ("engine", "pennylane_broadcast", "lightning_adjoint", "lightning_adjoint_per_sample")
SCALING_METHODS = ("engine", "pennylane_broadcast", "lightning_adjoint")


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- methods


def make_backend(method: str) -> Any:
    """The circuit backend behind a method name (epoch or circuit method)."""
    if method in ("qtransfer", "engine"):
        return TorchBackend()
    if method == "pennylane_per_sample":
        # the tutorial's way; its diff_method "best" resolves to backprop on default.qubit
        return PennyLaneBackend("default.qubit", diff_method="backprop", per_sample=True)
    if method == "pennylane_broadcast":
        return PennyLaneBackend("default.qubit", diff_method="backprop")
    if method == "lightning_adjoint":
        return PennyLaneBackend("lightning.qubit", diff_method="adjoint")
    if method == "lightning_adjoint_per_sample":
        return PennyLaneBackend("lightning.qubit", diff_method="adjoint", per_sample=True)
    raise ValueError(f"unknown method {method!r}")


def make_head(method: str, seed: int = 0) -> nn.Module:
    """The float32 head for an epoch method, initialised from `seed` (same weights for every quantum head)."""
    torch.manual_seed(seed)
    if method == "classical":
        return DressedClassicalHead(N_FEATURES, N_CLASSES, n_qubits=HEAD_QUBITS)
    return DressedQuantumHead(N_FEATURES, N_CLASSES, n_qubits=HEAD_QUBITS, depth=DEPTH, backend=make_backend(method))


# --------------------------------------------------------------------------- epoch benchmark


def make_data(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Synthetic features (N_SAMPLES, N_FEATURES) and random labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=gen)
    y = torch.randint(0, N_CLASSES, (N_SAMPLES,), generator=gen)
    return x, y


def train_steps(head: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, batch: int,
                gen: torch.Generator, max_samples: int | None = None) -> int:
    """Train on a shuffled pass over (x, y) in batches, up to max_samples; returns the samples used."""
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=gen)
    limit = len(x) if max_samples is None else min(max_samples, len(x))
    done = 0
    for start in range(0, limit, batch):
        idx = order[start : min(start + batch, limit)]
        opt.zero_grad()
        loss = loss_fn(head(x[idx]), y[idx])
        loss.backward()
        opt.step()
        done += len(idx)
    return done


def time_epochs(method: str, batch: int, x: Tensor, y: Tensor, repeats: int, fraction: float) -> dict[str, Any]:
    """Median seconds of one training epoch of `method` at `batch` (scaled up from a fraction if < 1)."""
    head = make_head(method)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(1)
    train_steps(head, opt, x, y, batch, gen, max_samples=WARMUP_STEPS * batch)
    max_samples = None if fraction >= 1 else max(batch, round(fraction * N_SAMPLES / batch) * batch)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = train_steps(head, opt, x, y, batch, gen, max_samples=max_samples)
        runs.append((time.perf_counter() - t0) * N_SAMPLES / done)
    return {"seconds": statistics.median(runs), "runs": runs, "samples_timed": done}


def agreement(x: Tensor) -> dict[str, float]:
    """Max |logits - engine logits| at initialisation for each quantum method (same seed, same weights)."""
    with torch.no_grad():
        ref = make_head("qtransfer")(x)
        return {m: (make_head(m)(x) - ref).abs().max().item() for m in SLOW_EPOCH_METHODS}


def epoch_ratios(sec: dict[str, float]) -> dict[str, float]:
    """The speed ratios a/d, b/d, c/d, d/e of one batch size."""
    d = sec["qtransfer"]
    return {
        "pennylane_per_sample/qtransfer": sec["pennylane_per_sample"] / d,
        "pennylane_broadcast/qtransfer": sec["pennylane_broadcast"] / d,
        "lightning_adjoint/qtransfer": sec["lightning_adjoint"] / d,
        "qtransfer/classical": d / sec["classical"],
    }


def epoch_benchmark(quick: bool) -> dict[str, Any]:
    """Epoch timings and ratios for every method at every batch size."""
    x, y = make_data()
    fraction = 0.25 if quick else 1.0
    repeats = {"qtransfer": 3 if quick else 9, "classical": 3 if quick else 9,
               "pennylane_broadcast": 1 if quick else 3, "lightning_adjoint": 1 if quick else 3,
               "pennylane_per_sample": 1 if quick else 3}
    out: dict[str, Any] = {}
    for batch in EPOCH_BATCHES:
        seconds, runs, timed = {}, {}, {}
        for method in EPOCH_METHODS:
            frac = fraction if method in SLOW_EPOCH_METHODS else 1.0
            r = time_epochs(method, batch, x, y, repeats[method], frac)
            seconds[method], runs[method], timed[method] = r["seconds"], r["runs"], r["samples_timed"]
            log(f"epoch batch {batch:>2} {method:<22} {r['seconds']:.4f} s (runs {len(r['runs'])}, "
                f"samples timed {r['samples_timed']}/{N_SAMPLES})")
        out[f"batch_{batch}"] = {"seconds": seconds, "ratios": epoch_ratios(seconds), "runs": runs,
                                 "samples_timed_per_run": timed}
    out["protocol"] = {
        "samples": N_SAMPLES, "features": N_FEATURES, "classes": N_CLASSES, "optimizer": f"Adam(lr={LR})",
        "loss": "cross-entropy", "dtype": "float32", "head": f"tutorial template, {HEAD_QUBITS} qubits, depth {DEPTH}",
        "warmup_steps": WARMUP_STEPS, "repeats": repeats, "statistic": "median",
        "slow_method_fraction": fraction,
        "note": "seconds of a run = measured seconds * samples / samples timed (exact when the fraction is 1)",
    }
    out["init_logit_max_abs_diff_vs_qtransfer"] = agreement(x[:8])
    return out


# --------------------------------------------------------------------------- circuit workers


def maxrss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM on Linux, else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux), so imports' transient peaks don't hide ours."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def meminfo_mb(field: str) -> float:
    """A field of /proc/meminfo in MB (inf where unavailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


def cap_address_space() -> None:
    """Safety net: let this worker fail with an allocation error instead of exhausting the machine."""
    avail = meminfo_mb("MemAvailable")
    if math.isinf(avail):
        return
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) / 1024
    limit = int((vm + 0.9 * avail) * 2**20)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def fwd_bwd(backend: Any, circuit: Any, x: Tensor, w: Tensor) -> float:
    """Seconds of one forward + backward of the circuit alone (loss = sum of the outputs)."""
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    t0 = time.perf_counter()
    backend(circuit, xi, wi).sum().backward()
    return time.perf_counter() - t0


def floor_seconds(n_qubits: int, batch: int) -> float:
    """One copy of a batch of float32 states of n qubits into a preallocated tensor (best of 20)."""
    x = torch.randn(batch, 2**n_qubits)
    y = torch.empty_like(x)
    y.copy_(x)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        y.copy_(x)
        times.append(time.perf_counter() - t0)
    return min(times)


def worker(method: str, template: str, n_qubits: int, batch: int, repeats: int, budget: float) -> dict[str, Any]:
    """Time forward+backward steps of one method in this process; report seconds, state passes and peak memory."""
    import pennylane  # noqa: F401  -- imported by every worker so the baselines match

    cap_address_space()
    circuit = make_circuit(template, n_qubits, DEPTH)
    backend = make_backend(method)
    if isinstance(backend, PennyLaneBackend):
        backend.qnode(circuit)
    run_batch = min(batch, LIGHTNING_SAMPLES) if method == "lightning_adjoint" and n_qubits >= 14 else batch
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(run_batch, n_qubits, generator=gen) - 0.5) * math.pi
    w = 0.01 * torch.randn(circuit.n_weights, generator=gen)
    floor = floor_seconds(n_qubits, batch)
    peak_reset = reset_peak_rss()
    base = maxrss_mb()
    scale = batch / run_batch
    try:
        t0 = time.perf_counter()
        cold = fwd_bwd(backend, circuit, x, w) * scale
        # a first line, so that a worker killed by the timeout still tells how long one step took
        print(json.dumps({"status": "partial", "cold_seconds": cold, "peak_mb": maxrss_mb() - base}), flush=True)
        times = []
        while len(times) < repeats and time.perf_counter() - t0 < budget:
            times.append(fwd_bwd(backend, circuit, x, w) * scale)
    except (MemoryError, RuntimeError) as err:
        status = "oom" if isinstance(err, MemoryError) or "alloc" in str(err).lower() else "error"
        return {"status": status, "error": f"{type(err).__name__}: {str(err)[:300]}", "peak_mb": maxrss_mb() - base}
    seconds = min(times) if times else cold
    return {
        "status": "ok",
        "seconds": seconds,
        "median_seconds": statistics.median(times) if times else cold,
        "cold_seconds": cold,
        "warm_steps_timed": len(times),
        "samples_timed": run_batch,
        "floor_seconds": floor,
        "state_passes": seconds / floor,
        "peak_mb": maxrss_mb() - base,
        "baseline_mb": base,
        "peak_mark_reset": peak_reset,
    }


def estimate_mb(method: str, template: str, n_qubits: int, batch: int) -> float:
    """Rough peak memory of a forward+backward step: state size x copies kept for the backward pass."""
    circuit = make_circuit(template, n_qubits, DEPTH)
    gates = len(circuit.gates)
    amps = 2**n_qubits
    if method == "engine":
        return circuit_bytes(circuit, batch) / 2**20
    if method == "pennylane_broadcast":
        return amps * batch * 16 * 1.5 * gates / 2**20  # complex128 states, ~1 per gate kept by autograd
    return amps * 16 * 8 / 2**20  # lightning adjoint: a few complex128 states of one sample at a time


def run_worker(method: str, n_qubits: int, batch: int, args: argparse.Namespace,
               template: str = "tutorial") -> dict[str, Any]:
    """Run one (method, template, n_qubits, batch) in a subprocess with a timeout; skip it when it would not fit."""
    est, avail = estimate_mb(method, template, n_qubits, batch), meminfo_mb("MemAvailable")
    info = {"estimated_mb": round(est, 1)}
    if est > MEMORY_HEADROOM * avail:
        return {"status": "skipped", "reason": f"estimated {est:.0f} MB > {MEMORY_HEADROOM:.0%} of "
                f"{avail:.0f} MB available", **info}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--template", template,
           "--n-qubits", str(n_qubits), "--batch", str(batch), "--repeats", str(args.worker_repeats),
           "--budget", str(args.worker_budget)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as err:
        partial = last_json_line(err.stdout)
        return {"status": "timeout", "timeout_s": args.timeout, **({"first_step": partial} if partial else {}), **info}
    wall = time.perf_counter() - t0
    result = last_json_line(proc.stdout)
    if proc.returncode != 0 or not result or result["status"] == "partial":
        return {"status": "error", "returncode": proc.returncode, "stderr_tail": proc.stderr[-1500:], **info}
    return {**result, "worker_wall_s": wall, **info}


def last_json_line(stdout: str | bytes | None) -> dict[str, Any] | None:
    """The last line of a worker's output as JSON, or None."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout or ""
    lines = text.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def describe(result: dict[str, Any]) -> str:
    """One-line summary of a worker result for the progress log."""
    if result["status"] != "ok":
        return f"{result['status']} (est {result.get('estimated_mb')} MB)"
    passes = f", {result['state_passes']:.0f} passes" if "state_passes" in result else ""
    return f"{result['seconds']:.4f} s{passes}, peak {result['peak_mb']:.0f} MB (est {result['estimated_mb']} MB)"


def scaling_benchmark(cases: list[tuple[str, int]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Forward+backward seconds, state passes and peak memory per method for each (template, qubits) at batch 32,
    with the peers' time over the engine's."""
    rows, gave_up = [], {}
    for template, n in cases:
        row: dict[str, Any] = {"template": template, "n_qubits": n, "batch": SCALING_BATCH, "depth": DEPTH}
        for method in SCALING_METHODS:
            if gave_up.get((template, method)):
                row[method] = {"status": "skipped", "reason": f"{gave_up[template, method]} at fewer qubits"}
            else:
                row[method] = run_worker(method, n, SCALING_BATCH, args, template)
                if row[method]["status"] in ("timeout", "oom"):
                    gave_up[template, method] = row[method]["status"]
            log(f"scaling {template} {n:>2} qubits {method:<20} {describe(row[method])}")
        engine = row["engine"]
        if engine["status"] == "ok":
            row["ratios"] = {f"{m}/engine": row[m]["seconds"] / engine["seconds"]
                             for m in SCALING_METHODS[1:] if row[m]["status"] == "ok"}
        rows.append(row)
    return rows


def noisy_benchmark(qubits: tuple[int, ...], budget: float) -> list[dict[str, Any]]:
    """Density matrices with depolarizing noise after every gate, forward+backward at batch 32 (float64), against
    default.mixed in the same process (see noise_speed.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from noise_speed import density_point

    out = []
    for n in qubits:
        out.append(density_point(n, SCALING_BATCH, budget))
        log(f"noisy {n} qubits: {out[-1]['qtransfer_s']:.3f} s vs default.mixed {out[-1]['default_mixed_s']:.1f} s")
    return out


def train_benchmark(n_qubits: int, epochs: int) -> dict[str, Any]:
    """A full training run of the 12-qubit head on 244 cached-feature samples: batch 4, Adam, plus the
    validation pass over 153 samples each epoch, as `qtransfer train` does on cached features."""
    x, y = make_data()
    gen = torch.Generator().manual_seed(0)
    val_x, val_y = torch.randn(153, N_FEATURES, generator=gen), torch.randint(0, N_CLASSES, (153,), generator=gen)
    torch.manual_seed(0)
    head = DressedQuantumHead(N_FEATURES, N_CLASSES, n_qubits=n_qubits, depth=DEPTH)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    order_gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    for _ in range(epochs):
        head.train()
        train_steps(head, opt, x, y, 4, order_gen)
        head.eval()
        with torch.no_grad():
            head(val_x).argmax(1).eq(val_y).float().mean()
    seconds = time.perf_counter() - t0
    log(f"train {epochs} epochs at {n_qubits} qubits: {seconds:.1f} s")
    return {"n_qubits": n_qubits, "epochs": epochs, "batch": 4, "seconds": seconds}


def per_sample_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Forward+backward of one sample at 16 qubits: engine vs lightning adjoint (one QNode call)."""
    out: dict[str, Any] = {"n_qubits": PER_SAMPLE_QUBITS, "batch": 1, "depth": DEPTH}
    for key, method in (("engine", "engine"), ("lightning_adjoint", "lightning_adjoint_per_sample")):
        out[key] = run_worker(method, PER_SAMPLE_QUBITS, 1, args)
        log(f"per-sample {PER_SAMPLE_QUBITS} qubits {key:<18} {describe(out[key])}")
    if out["engine"]["status"] == out["lightning_adjoint"]["status"] == "ok":
        out["engine/lightning_adjoint"] = out["engine"]["seconds"] / out["lightning_adjoint"]["seconds"]
    return out


# --------------------------------------------------------------------------- report


def target(value: float | None, ok: Callable[[float], bool]) -> dict[str, Any]:
    """A target entry: the measured value and whether it passes (None when not measured)."""
    return {"value": value, "pass": None if value is None else bool(ok(value))}


def _case(scaling: list | None, template: str, n: int) -> dict[str, Any]:
    for row in scaling or []:
        if row["template"] == template and row["n_qubits"] == n:
            return row
    return {}


def targets(epoch: dict[str, Any] | None, scaling: list | None, noisy: list | None,
            train: dict[str, Any] | None) -> dict[str, Any]:
    """The speed targets evaluated on this run's numbers."""
    r4 = epoch["batch_4"]["ratios"] if epoch else {}
    r32 = epoch["batch_32"]["ratios"] if epoch else {}

    def eng(t, n, key="seconds"):
        return _case(scaling, t, n).get("engine", {}).get(key)

    def ratio(t, n, peer):
        return _case(scaling, t, n).get("ratios", {}).get(f"{peer}/engine")

    noisy10 = next((p["ratio"] for p in noisy or [] if p["qubits"] == 10), None)
    return {
        "tutorial 16 qubits <= 0.25 s": target(eng("tutorial", 16), lambda v: v <= 0.25),
        "tutorial 16 qubits >= 40x lightning adjoint":
            target(ratio("tutorial", 16, "lightning_adjoint"), lambda v: v >= 40),
        "tutorial 16 qubits <= 800 state passes": target(eng("tutorial", 16, "state_passes"), lambda v: v <= 800),
        "tutorial 12 qubits <= 20 ms": target(eng("tutorial", 12), lambda v: v <= 0.02),
        "strongly_entangling 14 qubits >= 10x lightning adjoint":
            target(ratio("strongly_entangling", 14, "lightning_adjoint"), lambda v: v >= 10),
        "strongly_entangling 16 qubits >= 10x lightning adjoint":
            target(ratio("strongly_entangling", 16, "lightning_adjoint"), lambda v: v >= 10),
        "tutorial 20 qubits peak <= 1500 MB": target(eng("tutorial", 20, "peak_mb"), lambda v: v <= 1500),
        "tutorial 20 qubits <= 250 state passes": target(eng("tutorial", 20, "state_passes"), lambda v: v <= 250),
        "tutorial 22 qubits runs": target(eng("tutorial", 22), lambda v: v > 0),
        "noisy 10 qubits >= 20x default.mixed": target(noisy10, lambda v: v >= 20),
        "30 epochs at 12 qubits <= 10 s":
            target(train and train["seconds"] * TRAIN_EPOCHS / train["epochs"], lambda v: v <= 10),
        "engine_within_1.5x_classical (batch 4)": target(r4.get("qtransfer/classical"), lambda v: v <= 1.5),
        "engine_within_1.5x_classical (batch 32)": target(r32.get("qtransfer/classical"), lambda v: v <= 1.5),
    }


def version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None) -> dict[str, Any]:
    """CPU, memory, library versions and thread settings of this run."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pennylane": version("pennylane"),
        "pennylane_lightning": version("pennylane-lightning"),
        "qtransfer": qtransfer.__version__,
        "threads_flag": threads,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "mem_total_mb": round(meminfo_mb("MemTotal")),
        "mem_available_mb_at_start": round(meminfo_mb("MemAvailable")),
        "loadavg_at_start": os.getloadavg(),
    }


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def rounded(obj: Any, digits: int = 6) -> Any:
    """Round floats in a nested structure for a readable JSON."""
    if isinstance(obj, float):
        return obj if not math.isfinite(obj) else float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (worker flags are hidden)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, 4-12 qubits, partial slow epochs")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--cases", nargs="+", help="template:qubits cases of the scaling table (default "
                   f"{' '.join(f'{t}:{n}' for t, n in FULL_CASES)})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a scaling worker is killed")
    p.add_argument("--skip", nargs="+", default=[], choices=["epoch", "scaling", "per_sample", "noisy", "train"],
                   help="sections to leave out")
    p.add_argument("--worker", choices=CIRCUIT_METHODS, help=argparse.SUPPRESS)
    p.add_argument("--template", default="tutorial", help=argparse.SUPPRESS)
    p.add_argument("--noisy-budget", type=float, default=60.0,
                   help="seconds of default.mixed per noisy point before scaling")
    p.add_argument("--n-qubits", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.worker_repeats = 3 if args.quick else 7
    args.worker_budget = 20.0 if args.quick else 60.0
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or one worker) and print the JSON."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.worker:
        result = worker(args.worker, args.template, args.n_qubits, args.batch, args.repeats, args.budget)
        print(json.dumps(result))
        return
    t0 = time.perf_counter()
    report: dict[str, Any] = {"machine": machine_info(args.threads), "quick": args.quick}
    epoch = None if "epoch" in args.skip else epoch_benchmark(args.quick)
    report["epoch"] = epoch
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases] if args.cases else \
        list(QUICK_CASES if args.quick else FULL_CASES)
    scaling = report["scaling"] = None if "scaling" in args.skip else scaling_benchmark(cases, args)
    report["per_sample_16"] = None if "per_sample" in args.skip else per_sample_benchmark(args)
    noisy = report["noisy"] = None if "noisy" in args.skip else \
        noisy_benchmark(NOISY_QUBITS[:2] if args.quick else NOISY_QUBITS, args.noisy_budget)
    train = report["train_12_qubits"] = None if "train" in args.skip else \
        train_benchmark(TRAIN_QUBITS, 3 if args.quick else TRAIN_EPOCHS)
    report["targets"] = targets(epoch, scaling, noisy, train)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["total_seconds"] = time.perf_counter() - t0
    text = json.dumps(rounded(report), indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
