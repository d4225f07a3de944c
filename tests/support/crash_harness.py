"""SIGKILL a qtransfer command at a chosen point, then check what it left and that rerunning recovers exactly.

Shared by tests/test_crash.py (a few kill points) and benchmarks/kill_campaign.py (the full campaign). A workload
is one command on a small real dataset; its clean run is the reference every killed-then-recovered run must equal.

Kills at an atomic write are injected, not timed: the process runs with QTRANSFER_FAULT_WRITE=N (or N:torn) and
qtransfer.storage SIGKILLs it at its N-th atomic write, after the temporary file is written (whole, or cut to half
with :torn) and before the rename, so the same N always lands at the same point. A clean run counts its writes with
QTRANSFER_FAULT_LOG=PATH (one line per write). Kills at a time (`at=`) remain for kills between writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qtransfer.storage import FAULT_LOG, FAULT_WRITE
from support.real_images import real_subset
from support.runs import untimed_rows

BACKBONE = ["--backbone", "efficientnet_lite0", "--workers", "0"]
RESULT_FILE = {"compare": "compare.json", "sweep": "sweep.json"}
CONFIG_FILE = {"train": "config.json", "compare": "compare_config.json", "sweep": "sweep_config.json"}


def small_dataset(source: Path, root: Path, per_class: int) -> Path:
    """`per_class` real images per class and split of `source`, as symbolic links under `root`."""
    return real_subset(source, root, {"train": per_class, "val": per_class})


# ------------------------------------------------------------------------------------- running commands


def run_cli(argv: list[str], in_process: bool = False, timeout: float = 900) -> tuple[int, str, str]:
    """`qtransfer --quiet ARGV`: exit code, stdout, stderr; in this process (faster) or as a subprocess."""
    if in_process:
        from qtransfer.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--quiet", *argv])
        return code, out.getvalue(), err.getvalue()
    proc = subprocess.run(_command(argv), capture_output=True, text=True, timeout=timeout, env=_env())
    return proc.returncode, proc.stdout, proc.stderr


def _command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "qtransfer", "--quiet", *argv]


def _env() -> dict[str, str]:
    # one thread, as the tests' own process runs: a killed run, its rerun and the clean run compute alike
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}


def temp_files(*roots: Path) -> list[Path]:
    """The `.*.tmp` files of atomic writes under these folders."""
    return sorted(p for root in roots if root.exists() for p in root.rglob(".*.tmp"))


@dataclass
class Kill:
    """How one killed process ended: when, whether the kill landed before it finished, what it left."""

    seconds: float
    killed: bool
    trigger: str
    left_tmp: list[str] = field(default_factory=list)


def run_and_kill(argv: list[str], watch: list[Path], at: float | None = None, nth_write: int | None = None,
                 torn: bool = False, timeout: float = 900) -> Kill:
    """Run `qtransfer ARGV` until it SIGKILLs itself at its `nth_write`-th atomic write (fault injection:
    QTRANSFER_FAULT_WRITE, see qtransfer.storage; `torn`: with the temporary file cut to half), or SIGKILL it
    `at` seconds after its start (a kill between writes). `watch`: the folders whose temporary files it left."""
    if (at is None) == (nth_write is None):
        raise ValueError("give one of at= and nth_write=")
    started = time.perf_counter()
    env = _env()
    if nth_write is not None:
        env[FAULT_WRITE] = f"{nth_write}{':torn' if torn else ''}"
    proc = subprocess.Popen(_command(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if at is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=at)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    seconds = time.perf_counter() - started
    trigger = f"at {at:.2f} s" if at is not None else f"atomic write #{nth_write}{' (torn)' if torn else ''}"
    return Kill(seconds, proc.returncode == -signal.SIGKILL, trigger, [str(p) for p in temp_files(*watch)])


def count_atomic_writes(argv: list[str], timeout: float = 900) -> tuple[float, list[str], str]:
    """Run `qtransfer ARGV` to its end, the process logging its atomic writes (QTRANSFER_FAULT_LOG): seconds, the
    written paths in order (write #n is the n-th), stdout. The clean run that kills are drawn against."""
    with tempfile.TemporaryDirectory(prefix="qtransfer-writes-") as folder:
        log = Path(folder) / "writes.log"
        started = time.perf_counter()
        proc = subprocess.run(_command(argv), capture_output=True, text=True, timeout=timeout,
                              env={**_env(), FAULT_LOG: str(log)})
        seconds = time.perf_counter() - started
        writes = log.read_text().splitlines() if log.exists() else []
    if proc.returncode != 0:
        raise RuntimeError(f"clean run of {argv} failed: {proc.stderr[-2000:]}")
    return seconds, writes, proc.stdout


# ------------------------------------------------------------------------------------- reading what is on disk


def shard_rows(cache: Path) -> tuple[dict[str, bytes], list[str]]:
    """Read-only view of a feature cache: image hash -> its feature row's bytes over every shard that verifies,
    and the shards that do not (a corrupt entry that a reader must never be served)."""
    rows: dict[str, bytes] = {}
    bad: list[str] = []
    for meta in sorted(cache.rglob("*.json")):
        try:
            entry = json.loads(meta.read_text())
            array = np.load(meta.with_suffix(".npy"), allow_pickle=False)
            h = hashlib.sha256()
            for start in range(0, len(array), 4096):
                h.update(np.ascontiguousarray(array[start:start + 4096]).data)
            if h.hexdigest() != entry["sha256"] or len(array) != len(entry["hashes"]):
                raise ValueError("checksum mismatch")
        except Exception as err:  # noqa: BLE001 - any failure is a corrupt entry
            bad.append(f"{meta.name}: {err}")
            continue
        rows.update((key, array[i].tobytes()) for i, key in enumerate(entry["hashes"]))
    return rows, bad


def orphan_arrays(cache: Path) -> list[str]:
    """Shard arrays whose index (.json) was never written: a writer killed between the two files."""
    return sorted(str(p) for p in cache.rglob("*.npy") if not p.with_suffix(".json").exists())


def comparison_runs(run_dir: Path, command: str) -> list[dict[str, Any]]:
    """A finished comparison's runs without timings, in order."""
    result = json.loads((run_dir / RESULT_FILE[command]).read_text())
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in result["runs"]]


def runs_jsonl_whole(run_dir: Path) -> tuple[bool, int]:
    """Whether every line of runs.jsonl is one complete JSON object, and how many lines it has."""
    path = run_dir / "runs.jsonl"
    if not path.exists():
        return True, 0
    lines = path.read_text().splitlines()
    try:
        return all(isinstance(json.loads(line), dict) for line in lines), len(lines)
    except json.JSONDecodeError:
        return False, len(lines)


# ------------------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    """One command on a small dataset, its clean run, and how to kill and recover it."""

    command: str  # extract | train | compare | sweep
    data: Path
    root: Path  # where the trials' folders go
    warm_cache: Path | None = None  # a full cache to start from (copied per trial); None: start empty
    clean: dict[str, Any] = field(default_factory=dict)

    def argv(self, cache: Path, out: Path) -> list[str]:
        """The command line of this workload with its cache and output folder."""
        common = ["--data", str(self.data), *BACKBONE, "--cache-dir", str(cache)]
        if self.command == "extract":
            return ["extract", *common, "--json"]
        run = [*common, "--out", str(out), "--name", "killed"]
        if self.command == "train":
            return ["train", *run, "--epochs", "4", "--qubits", "3", "--step-size", "2"]
        if self.command == "compare":
            return ["compare", *run, "--heads", "linear", "quantum:qubits=3", "--seed-list", "1", "2",
                    "--epochs", "2"]
        return ["sweep", *run, "--depths", "1", "2", "--qubit-counts", "2", "--seed-list", "1", "--epochs", "2",
                "--no-classical"]

    def folders(self, name: str, cold: bool = False) -> tuple[Path, Path]:
        """A trial's cache (a copy of the warm cache unless `cold`) and output folder."""
        cache, out = self.root / name / "cache", self.root / name / "out"
        shutil.rmtree(self.root / name, ignore_errors=True)
        if self.warm_cache is not None and not cold:
            shutil.copytree(self.warm_cache, cache)
        else:
            cache.mkdir(parents=True)
        out.mkdir(parents=True)
        return cache, out

    def run_clean(self, in_process: bool = False) -> dict[str, Any]:
        """The uninterrupted run: its duration, its atomic writes in order (as a subprocess; none counted in this
        process), features and results."""
        cache, out = self.folders("clean")
        argv = self.argv(cache, out)
        if in_process:
            t = time.perf_counter()
            code, _, stderr = run_cli(argv, in_process=True)
            if code != 0:
                raise RuntimeError(f"clean run of {argv} failed: {stderr[-2000:]}")
            seconds, writes = time.perf_counter() - t, []
        else:
            seconds, writes, _ = count_atomic_writes(argv)
        rows, bad = shard_rows(cache)
        assert not bad, bad
        self.clean = {"seconds": seconds, "atomic_writes": len(writes), "writes": writes, "features": rows,
                      "cache": cache}
        if self.command == "train":
            self.clean["metrics"] = untimed_rows(next(out.iterdir()))
        elif self.command in RESULT_FILE:
            self.clean["runs"] = comparison_runs(next(out.iterdir()), self.command)
        return self.clean

    def count_writes(self, cold: bool = False) -> list[str]:
        """The atomic writes of an uninterrupted run in fresh folders (`cold`: from an empty cache), in order."""
        cache, out = self.folders("count-cold" if cold else "count", cold)
        return count_atomic_writes(self.argv(cache, out))[1]

    def trial(self, name: str, at: float | None = None, nth_write: int | None = None, torn: bool = False,
              cold: bool = False, in_process: bool = False) -> dict[str, Any]:
        """Kill one run at an instant or atomic write, check what it left, recover (resume or rerun) and check."""
        return self.recover(self.kill(name, at, nth_write, torn, cold), in_process)

    def kill(self, name: str, at: float | None = None, nth_write: int | None = None, torn: bool = False,
             cold: bool = False) -> dict[str, Any]:
        """Start a run in fresh folders and SIGKILL it (see run_and_kill); what it left, for `recover`."""
        cache, out = self.folders(name, cold)
        before, _ = shard_rows(cache)
        kill = run_and_kill(self.argv(cache, out), [cache, out], at=at, nth_write=nth_write, torn=torn)
        report: dict[str, Any] = {"command": self.command, "trigger": kill.trigger,
                                  "killed_at_s": round(kill.seconds, 3), "killed": kill.killed,
                                  "cold_cache": self.warm_cache is None or cold}
        rows, bad = shard_rows(cache)
        run_dir = next(iter(sorted(out.iterdir())), None)
        report["phase"] = self._phase(kill, run_dir, len(rows) - len(before))
        report["left_tmp"] = len(kill.left_tmp)
        report["orphan_arrays"] = len(orphan_arrays(cache))
        report["checks"] = {"no_corrupt_shard_on_disk": not bad}
        report["missing"] = len(self.clean["features"]) - len(rows.keys() & self.clean["features"].keys())
        report["folders"] = (cache, out, run_dir)
        return report

    def recover(self, report: dict[str, Any], in_process: bool = False) -> dict[str, Any]:
        """Rerun or resume a killed run (see `kill`) and check the cache, the results and the temporary files."""
        cache, out, run_dir = report.pop("folders")
        checks, missing = report["checks"], report["missing"]
        # recover: --resume when the run left a resumable state, else the same command again
        argv, report["recovery"] = self._recovery(cache, out, run_dir)
        code, stdout, stderr = run_cli(argv, in_process=in_process)
        checks["recovery_exit_0"] = code == 0
        checks["no_corrupt_warning"] = "is corrupt" not in stderr
        after, bad_after = shard_rows(cache)
        checks["cache_verifies"] = not bad_after
        checks["features_bit_for_bit"] = after == self.clean["features"]
        checks["tmp_files_removed"] = not temp_files(cache) and (
            report["recovery"] != "resume" or run_dir is None or not temp_files(run_dir))
        if self.command == "extract":
            computed = json.loads(stdout)["computed"] if code == 0 else None
            checks["computed_only_missing"] = computed == missing
            report["computed"] = computed
        elif code == 0:
            resumed = report["recovery"] == "resume"
            final = run_dir if resumed else next(p for p in sorted(out.iterdir()) if p != run_dir)
            if self.command == "train":
                checks["metrics_exact"] = untimed_rows(final) == self.clean["metrics"]
                computed = json.loads((final / "summary.json").read_text())["features_computed"]
                checks["computed_only_missing"] = sum(computed.values()) == missing
            else:
                checks["results_exact"] = comparison_runs(final, self.command) == self.clean["runs"]
                whole, lines = runs_jsonl_whole(final)
                checks["runs_jsonl_whole"] = whole and lines == len(self.clean["runs"])
        report["checks"] = checks
        report["passed"] = all(checks.values())
        if not report["passed"]:
            report["stderr"] = stderr[-1500:]
        return report

    def _phase(self, kill: Kill, run_dir: Path | None, new_rows: int) -> str:
        if not kill.killed:
            return "finished before the kill"
        if kill.left_tmp:
            parts = Path(kill.left_tmp[0]).name[1:].split(".")  # .<name>.<pid>.<host>.<rand>.tmp
            target = ".".join(parts[:-4])
            return f"writing a cache shard's .{parts[-5]}" if len(parts[0]) == 32 else f"writing {target}"
        if self.command == "extract":
            return f"extraction ({new_rows} feature rows written)"
        if run_dir is None:
            return "start-up (imports, backbone, data check)"
        if self.command == "train":
            if not (run_dir / "last.pt").exists():
                return f"features or epoch 1 ({new_rows} feature rows written)"
            if (run_dir / "summary.json").exists():
                return "after summary.json"
            return f"after epoch {len((run_dir / 'metrics.jsonl').read_text().splitlines())}"
        if not (run_dir / CONFIG_FILE[self.command]).exists():
            return f"features ({new_rows} feature rows written)"
        if (run_dir / RESULT_FILE[self.command]).exists():
            return "writing results"
        return f"{runs_jsonl_whole(run_dir)[1]} of {len(self.clean['runs'])} runs done"

    def _recovery(self, cache: Path, out: Path, run_dir: Path | None) -> tuple[list[str], str]:
        if self.command == "extract":
            return self.argv(cache, out), "rerun"
        # a run directory resumes once its settings are saved, even if it was killed before its first epoch
        resumable = run_dir is not None and (run_dir / CONFIG_FILE[self.command]).exists()
        if resumable:
            return [self.command, "--resume", str(run_dir)], "resume"
        return self.argv(cache, out), "fresh run (nothing resumable yet)"
