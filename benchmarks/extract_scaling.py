"""Feature-extraction throughput of `qtransfer extract` in 1 and 2 processes (torchrun, gloo, CPU); prints JSON.

Each launch fills a fresh cache with EfficientNet-Lite0 features of the real dataset (397 images);
images/s is the extraction's own time (after imports and model loading). Launches: one process
using every core (torch's default), one process at one thread, and two processes at one thread each
(torchrun's default). The two one-thread caches are also compared bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _default_data() -> Path:
    return Path(os.environ.get("QTRANSFER_DATA", ROOT.parent / "shared" / "data")) / "hymenoptera_data"


def launch(data: Path, backbone: str, processes: int, threads: int, cache: Path, batch_size: int) -> dict:
    """One `torchrun -m qtransfer extract` into an empty cache: its summary, and the launch's wall time."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", "qtransfer", "extract", "--data", str(data), "--backbone", backbone, "--cache-dir", str(cache),
           "--batch-size", str(batch_size), "--device", "cpu", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"processes": processes, "threads_per_process": threads, "images": summary["computed"],
            "extract_s": round(summary["seconds"], 2), "images_per_s": round(summary["images_per_s"], 2),
            "launch_wall_s": round(wall, 2)}


def cache_tensor(cache: Path) -> tuple[list[str], torch.Tensor]:
    """Every key of a filled cache, sorted, and their features."""
    from qtransfer.features.cache import FeatureCache

    (folder,) = (cache / "features").iterdir()
    store = FeatureCache(cache, folder.name)
    keys = sorted(store.lookup())
    return keys, store.mapped(keys).tensor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="launches per setting; the fastest is kept")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = [(1, cores), (1, 1), (2, 1)]
    results, caches = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for processes, threads in settings:
            runs = []
            for r in range(args.repeats):
                cache = Path(tmp) / f"p{processes}-t{threads}-{r}"
                runs.append(launch(args.data, args.backbone, processes, threads, cache, args.batch_size))
                caches[(processes, threads)] = cache
            results.append(max(runs, key=lambda x: x["images_per_s"]))
        keys_1, one = cache_tensor(caches[(1, 1)])
        keys_2, two = cache_tensor(caches[(2, 1)])
        identical = keys_1 == keys_2 and torch.equal(one, two)
    rate = {(r["processes"], r["threads_per_process"]): r["images_per_s"] for r in results}
    print(json.dumps({
        "backbone": args.backbone, "data": args.data.name, "device": "cpu", "cores": cores,
        "batch_size": args.batch_size, "repeats": args.repeats, "runs": results,
        "speedup_2_processes_vs_1_process_all_cores": round(rate[(2, 1)] / rate[(1, cores)], 3),
        "speedup_2_processes_vs_1_process_1_thread": round(rate[(2, 1)] / rate[(1, 1)], 3),
        "cache_of_2_processes_identical_to_1_process_same_threads": identical,
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
