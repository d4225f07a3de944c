"""SIGKILL `qtransfer extract`, `train`, `compare` and `sweep` at seeded random instants and at their atomic writes,
recover each (rerun or --resume), and check the cache, the results and the temporary files; prints JSON.

    python benchmarks/kill_campaign.py --data ../shared/data/hymenoptera_data --kills 60 --seed 0

Half of each command's kills fall at an instant drawn uniformly over its clean run's duration (kills between
writes, timed: they land wherever the process is), half at its n-th atomic write by fault injection
(QTRANSFER_FAULT_WRITE, see qtransfer.storage; n drawn over the clean run's logged writes, every other one with the
temporary file torn to half): a shard, checkpoint or runs.jsonl being written, exactly there. A run that finishes
before its instant is reported but not counted: trials go on until --kills kills have landed. Every other train
kill starts from an empty cache, so extraction inside train is killed too (drawn over a cold clean run's writes).
The checks are those of tests/support/crash_harness.py, shared with tests/test_crash.py. Recovery (rerun or --resume)
runs in this process, through the CLI's entry point, with one torch thread like the killed processes (run it with
OMP_NUM_THREADS=1).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.crash_harness import Workload, small_dataset  # noqa: E402

COMMANDS = ("extract", "train", "compare", "sweep")


def _log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def campaign(data: Path, kills: int, seed: int, per_class: int, workdir: Path, workers: int) -> dict:
    """Run the clean references, then killed-and-recovered trials spread over the commands until `kills` kills
    have landed. `workers` processes are killed side by side; recoveries run one at a time in this process."""
    started = time.perf_counter()
    rng = random.Random(seed)
    subset = small_dataset(data, workdir / "data", per_class)
    extract = Workload("extract", subset, workdir / "extract")
    workloads = {"extract": extract}
    clean = {"extract": extract.run_clean()}
    for command in COMMANDS[1:]:
        workloads[command] = Workload(command, subset, workdir / command, warm_cache=clean["extract"]["cache"])
    with ThreadPoolExecutor(len(COMMANDS) - 1) as pool:
        clean.update(zip(COMMANDS[1:], pool.map(lambda c: workloads[c].run_clean(), COMMANDS[1:])))
    clean["train"]["cold_atomic_writes"] = len(workloads["train"].count_writes(cold=True))
    _log("clean runs:", {c: round(v["seconds"], 1) for c, v in clean.items()})
    trials: list[dict] = []
    wanted = {c: kills // len(COMMANDS) + (i < kills % len(COMMANDS)) for i, c in enumerate(COMMANDS)}
    landed: Counter = Counter()
    drawn: Counter = Counter()
    for _ in range(4):  # a run that finishes before its instant is reported, not counted: draw again for it
        plan = []
        for k in range(max(wanted.values())):
            for command in COMMANDS:
                if k < wanted[command] - landed[command]:
                    plan.append((command, _draw(rng, drawn[command], clean, command)))
                    drawn[command] += 1
        if not plan:
            break
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(workloads[c].kill, f"{c}{len(trials) + i}", **kwargs)
                       for i, (c, kwargs) in enumerate(plan)]
            for (command, _), future in zip(plan, futures):
                report = workloads[command].recover(future.result(), in_process=True)
                trials.append(report)
                landed[command] += report["killed"]
                _log(f"{sum(landed.values())}/{kills} {command} {report['trigger']} -> {report['phase']}; recovery "
                     f"{report['recovery']}; "
                     f"{'passed' if report['passed'] else 'FAILED ' + json.dumps(report['checks'])}")
    return summarize(trials, clean, seed, per_class, time.perf_counter() - started)


def _draw(rng: random.Random, k: int, clean: dict, command: str) -> dict:
    """The k-th kill of a command: at a uniform instant (k mod 4 in 0, 1) or at its n-th atomic write (k mod 4 = 3:
    torn); every other train run starts from an empty cache."""
    cold = command == "train" and k % 2 == 1
    if k % 4 < 2:
        span = clean[command]["seconds"] + (clean["extract"]["seconds"] if cold else 0.0)
        return {"at": rng.uniform(0, span), "cold": cold}
    writes = clean[command]["cold_atomic_writes" if cold else "atomic_writes"]
    return {"nth_write": rng.randint(1, max(1, writes)), "torn": k % 4 == 3, "cold": cold}


def summarize(trials: list[dict], clean: dict, seed: int, per_class: int, seconds: float) -> dict:
    """Counts per command: kills that landed, phases, recoveries, checks passed."""
    commands = {}
    for command in COMMANDS:
        mine = [t for t in trials if t["command"] == command]
        commands[command] = {
            "trials": len(mine),
            "killed": sum(t["killed"] for t in mine),
            "finished_before_kill": sum(not t["killed"] for t in mine),
            "left_temporary_files": sum(t["left_tmp"] > 0 for t in mine),
            "left_orphan_arrays": sum(t["orphan_arrays"] > 0 for t in mine),
            "phases": dict(Counter(t["phase"] for t in mine).most_common()),
            "recovery": dict(Counter(t["recovery"] for t in mine)),
            "passed": sum(t["passed"] for t in mine),
            "failed_checks": dict(Counter(k for t in mine for k, ok in t["checks"].items() if not ok)),
        }
    return {
        "trials": len(trials), "kills": sum(t["killed"] for t in trials), "seed": seed,
        "images_per_class_and_split": per_class, "wall_s": round(seconds, 1),
        "clean_run_s": {c: round(v["seconds"], 1) for c, v in clean.items()},
        "clean_run_atomic_writes": {c: v["atomic_writes"] for c, v in clean.items()},
        "cold_train_atomic_writes": clean["train"]["cold_atomic_writes"],
        "all_passed": all(t["passed"] for t in trials),
        "commands": commands,
        "each_trial": trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("QTRANSFER_DATA", ROOT.parent / "shared" / "data")) / "hymenoptera_data"
    parser.add_argument("--data", type=Path, default=default, help="the hymenoptera dataset")
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=10, help="images per class and split (symbolic links)")
    parser.add_argument("--workdir", type=Path, help="where the trials run (default: a temporary folder)")
    parser.add_argument("--workers", type=int, default=2, help="processes killed side by side (default: 2)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: recoveries compute like the killed processes
    with tempfile.TemporaryDirectory(prefix="kill-campaign-") as tmp:
        workdir = args.workdir or Path(tmp)
        result = campaign(args.data.resolve(), args.kills, args.seed, args.per_class, workdir, args.workers)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
