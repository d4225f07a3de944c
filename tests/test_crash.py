"""Hard kills and concurrent processes: SIGKILL at an atomic write loses nothing and serves nothing torn; two
processes never share a run directory. The >= 50-kill campaign is benchmarks/kill_campaign.py, on the same harness."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from support.crash_harness import (
    Workload,
    run_and_kill,
    run_cli,
    shard_rows,
    small_dataset,
    temp_files,
)
from support.runs import untimed_rows

import qtransfer.runtime
import qtransfer.storage
from qtransfer.config import TrainConfig
from qtransfer.errors import DirectoryInUse, InputError
from qtransfer.experiments.compare import CompareSettings
from qtransfer.experiments.runner import read_runs
from qtransfer.runtime import new_run_dir, run_dir_lock
from qtransfer.storage import FAULT_LOG, FAULT_WRITE, atomic_write_text, remove_stale_temp_files

pytestmark = pytest.mark.subprocess  # the crash harness kills real processes


@pytest.fixture(scope="module")
def workloads(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Workload]:
    """extract, train and compare on 10 real images per class and split, each with its clean run (in this process)."""
    root = tmp_path_factory.mktemp("crash")
    data = small_dataset(hymenoptera, root / "data", per_class=10)
    extract = Workload("extract", data, root / "extract")
    extract.run_clean(in_process=True)
    out = {"extract": extract}
    for command in ("train", "compare"):
        out[command] = Workload(command, data, root / command, warm_cache=extract.clean["cache"])
        out[command].run_clean(in_process=True)
    return out


# Where each workload is killed, and the phase that write is in. The atomic writes of these runs, in order:
#   extract: shard 1's .npy, its .json, shard 2's .npy, its .json (one shard per split);
#   train: qtransfer.json, config.json, [from an empty cache: shard 1 .npy, .json, shard 2 .npy, .json], then per
#     epoch best.pt, last.pt, metrics.jsonl; then figures and summary.json;
#   compare: qtransfer.json, compare_config.json, runs.jsonl after each head's seeds, compare.json, .md, .png.
KILL_POINTS: dict[str, tuple[dict[str, object], str]] = {
    "extract": ({"nth_write": 1, "torn": True}, "writing a cache shard's .npy"),  # half of the first array written
    "train": ({"nth_write": 12, "cold": True}, "writing metrics.jsonl"),  # epoch 2: last.pt renamed, metrics not
    "compare": ({"nth_write": 4}, "writing runs.jsonl"),  # the second head's runs
    "train-early": ({"nth_write": 4, "cold": True}, "writing a cache shard's .json"),  # an array without its index
}


@pytest.fixture(scope="module")
def killed(workloads: dict[str, Workload], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every process the tests kill or contend with, run side by side (each spends most of its life importing):
    - extract, train (from an empty cache) and compare, each SIGKILLed by fault injection at its n-th atomic write
      (see KILL_POINTS);
    - two extracts filling one cache, one of them SIGKILLed at its first shard write;
    - a compare whose runs.jsonl is read while it runs, and whose directory another process asks for."""
    root = tmp_path_factory.mktemp("killed")
    results: dict[str, object] = {}

    def kill(name: str, kwargs: dict) -> None:
        results[name] = workloads[name.split("-")[0]].kill(f"kill-{name}", **kwargs)

    def two_extracts() -> None:
        argv = workloads["extract"].argv(root / "shared-cache", root)
        survivor = _start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        kill = run_and_kill(argv, [root / "shared-cache"], nth_write=1)
        _, stderr = survivor.communicate(timeout=600)
        results["two_extracts"] = (kill, survivor.returncode, stderr, root / "shared-cache", argv)

    def held_compare() -> None:
        w, out = workloads["compare"], root / "held"
        proc = _start(w.argv(w.warm_cache, out), stderr=subprocess.PIPE)
        lengths, refusal, whole = set(), None, True
        while proc.poll() is None:
            for path in out.glob("*/runs.jsonl"):
                lines = path.read_text().splitlines()
                whole = whole and all(_is_object(line) for line in lines)  # never a torn or mixed line
                lengths.add(len(lines))
                if refusal is None:
                    try:
                        with run_dir_lock(path.parent):
                            refusal = "not refused"
                    except DirectoryInUse as err:
                        refusal = str(err)
            time.sleep(0.002)
        _, stderr = proc.communicate()
        results["held_compare"] = (proc.returncode, stderr, proc.pid, lengths, whole, refusal, out)

    jobs = [(kill, (name, kwargs)) for name, (kwargs, _) in KILL_POINTS.items()]
    jobs += [(two_extracts, ()), (held_compare, ())]
    threads = [threading.Thread(target=job, args=args) for job, args in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _start(argv: list[str], **pipes: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qtransfer", "--quiet", *argv], text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **pipes)


# ------------------------------------------------------------------------------------- hard kills


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", ["extract", "train", "compare"])
def test_sigkill_at_an_atomic_write_then_rerun_or_resume_equals_a_clean_run(
    command: str, workloads: dict[str, Workload], killed: dict[str, object]
) -> None:
    report = dict(killed[command])  # type: ignore[call-overload]
    assert report["killed"] and report["phase"] == KILL_POINTS[command][1] and report["left_tmp"] == 1, report
    report = workloads[command].recover(report, in_process=True)
    assert report["passed"], report
    assert report["recovery"] == ("rerun" if command == "extract" else "resume")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sigkill_during_feature_extraction_before_the_first_epoch_resumes_to_equal_a_clean_run(
    workloads: dict[str, Workload], killed: dict[str, object]
) -> None:
    report = dict(killed["train-early"])  # type: ignore[call-overload]
    run_dir = report["folders"][2]
    assert report["killed"] and report["phase"] == KILL_POINTS["train-early"][1], report
    assert run_dir is not None and (run_dir / "config.json").exists() and not (run_dir / "last.pt").exists()
    assert report["orphan_arrays"] == 1, report  # the first shard's array is in place, its index is not
    report = workloads["train"].recover(report, in_process=True)
    assert report["recovery"] == "resume" and report["passed"], report


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_kill_between_last_pt_and_metrics_jsonl_of_the_final_epoch_is_repaired_on_resume(
    workloads: dict[str, Workload], tmp_path: Path
) -> None:
    # found by the campaign: last.pt held every epoch, metrics.jsonl one less, and no epoch was left to rewrite it
    clean = workloads["train"].clean
    run_dir = tmp_path / "run"
    shutil.copytree(next((clean["cache"].parent / "out").iterdir()), run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.jsonl").write_text("".join(lines[:-1]))
    (run_dir / "summary.json").unlink()
    code, _, stderr = run_cli(["train", "--resume", str(run_dir)], in_process=True)
    assert code == 0, stderr
    assert untimed_rows(run_dir) == clean["metrics"]


def test_a_torn_last_line_of_runs_jsonl_is_run_again_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"label": "a", "seed": 1}\n{"label": "b", "se')
    with pytest.warns(UserWarning, match="cut short; its run is run again"):
        assert read_runs(path) == [{"label": "a", "seed": 1}]
    path.write_text('{"label": "a", "se\n{"label": "b", "seed": 1}\n')
    with pytest.raises(ValueError, match=r"line 1 of .*runs.jsonl is not a JSON object; delete that line"):
        read_runs(path)


def test_only_temporary_files_of_dead_or_long_silent_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = qtransfer.storage._host()
    mine = tmp_path / f".last.pt.{os.getpid()}.{host}.abc123.tmp"
    theirs = tmp_path / f".last.pt.{dead.pid}.{host}.abc123.tmp"
    elsewhere = tmp_path / f".runs.jsonl.{dead.pid}.otherhost.abc123.tmp"  # another machine's: only by age
    old = tmp_path / ".metrics.jsonl.x1y2z3.tmp"  # the format before writers were named: only by age
    for p in (mine, theirs, elsewhere, old):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200,) * 2)
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted([theirs, old])
    assert mine.exists() and elsewhere.exists()


@pytest.mark.parametrize("torn", [False, True], ids=["whole", "torn"])
def test_fault_injection_kills_at_the_nth_atomic_write_before_its_rename(tmp_path: Path, torn: bool) -> None:
    script = ("import sys; from pathlib import Path; from qtransfer.storage import atomic_write_text\n"
              "for i in range(3): atomic_write_text(Path(sys.argv[1]) / f'f{i}', str(i) * 1000)")
    env = {**os.environ, FAULT_WRITE: "2:torn" if torn else "2", FAULT_LOG: str(tmp_path / "writes.log")}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / "f0").read_text() == "0" * 1000 and not (tmp_path / "f1").exists()  # no third write either
    assert not (tmp_path / "f2").exists()
    (left,) = temp_files(tmp_path)
    assert left.name.startswith(".f1.") and left.read_text() == "1" * (500 if torn else 1000)
    assert (tmp_path / "writes.log").read_text().splitlines() == [str(tmp_path / "f0"), str(tmp_path / "f1")]
    assert remove_stale_temp_files(tmp_path) == [left]  # its writer is dead: the next run removes it


def test_a_fault_injection_setting_that_names_no_write_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("0", "two", "3:half"):
        monkeypatch.setenv(FAULT_WRITE, bad)
        with pytest.raises(InputError, match=f"QTRANSFER_FAULT_WRITE='{bad}' is not N or N:torn with N >= 1"):
            qtransfer.storage._fault_from_environment()
    monkeypatch.setenv(FAULT_WRITE, "3:torn")
    fault = qtransfer.storage._fault_from_environment()
    assert fault is not None and (fault.kill_at, fault.torn, fault.log) == (3, True, None)
    assert FAULT_WRITE not in os.environ  # read once: processes started later do not inherit it
    assert qtransfer.storage._fault_from_environment() is None


# ------------------------------------------------------------------------------------- concurrency


def test_processes_starting_in_the_same_second_get_distinct_run_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(qtransfer.runtime, "datetime", Frozen)
    start, made = threading.Barrier(12), []

    def make() -> None:
        start.wait()
        made.append(new_run_dir(tmp_path, "train"))

    threads = [threading.Thread(target=make) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 12 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made) == sorted(["20260102-030405-train"] +
                                                  [f"20260102-030405-train-{i}" for i in range(1, 12)])


def test_a_second_process_on_a_directory_in_use_is_refused_and_sigkill_frees_it(tmp_path: Path) -> None:
    compare_dir, train_dir = tmp_path / "compare", tmp_path / "train"
    for folder in (compare_dir, train_dir):
        folder.mkdir()
    settings = CompareSettings(TrainConfig(data=str(tmp_path)), ["linear"], [1])
    atomic_write_text(compare_dir / "compare_config.json", settings.to_json())
    (train_dir / "last.pt").write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from qtransfer.runtime import run_dir_lock\n"
         "with run_dir_lock(sys.argv[1]), run_dir_lock(sys.argv[2]), run_dir_lock(sys.argv[1]):  # nested: one lock\n"
         " print('held', flush=True); time.sleep(600)"), str(compare_dir), str(train_dir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command, folder in (("compare", compare_dir), ("train", train_dir)):
            code, _, stderr = run_cli([command, "--resume", str(folder)], in_process=True)
            assert code == 1 and stderr.splitlines() == [
                (f"qtransfer {command}: error: {folder.resolve()} is in use by another qtransfer process "
                 f"(pid {holder.pid}); wait for it to finish, or stop it and run this again")]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    for folder in (compare_dir, train_dir):
        with run_dir_lock(folder):  # the system dropped the killed holder's lock: none is ever stale
            pass


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_running_compare_holds_its_directory_and_runs_jsonl_is_always_whole(
    workloads: dict[str, Workload], killed: dict[str, object]
) -> None:
    code, stderr, pid, lengths, whole, refusal, out = killed["held_compare"]  # type: ignore[misc]
    assert code == 0, stderr
    assert whole
    assert refusal is not None and f"is in use by another qtransfer process (pid {pid})" in refusal
    assert max(lengths) == len(workloads["compare"].clean["runs"]) and len(lengths) >= 2
    (run_dir,) = out.iterdir()  # the holder has finished: the directory is free again, with nothing left to do
    code, _, stderr = run_cli(["compare", "--resume", str(run_dir)], in_process=True)
    assert code == 0, stderr
    assert len(read_runs(run_dir / "runs.jsonl")) == len(workloads["compare"].clean["runs"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_processes_filling_one_cache_with_one_killed_midway(
    workloads: dict[str, Workload], killed: dict[str, object]
) -> None:
    kill, code, stderr, cache, argv = killed["two_extracts"]  # type: ignore[misc]
    assert kill.killed and code == 0, stderr
    assert "is corrupt" not in stderr
    rows, bad = shard_rows(cache)
    assert not bad and rows == workloads["extract"].clean["features"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt shard would warn
        code, stdout, stderr = run_cli(argv, in_process=True)
    assert code == 0 and json.loads(stdout)["computed"] == 0, stderr
    assert not temp_files(cache)  # the killed writer's, removed by the rerun
    assert shard_rows(cache)[0] == workloads["extract"].clean["features"]
