"""Opening a run's directory (runtime.open_run_dir, held_run_dir), as `train` and every command of many fits do:
a new one made and marked, or a resumed one reopened; locked while in use, its settings files written first."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import qtransfer.runtime as runtime
from qtransfer.formats import RUN_MARKER
from qtransfer.runtime import held_run_dir, open_run_dir


def test_a_new_run_directory_is_marked_holds_its_settings_files_and_is_locked_only_while_open(tmp_path: Path) -> None:
    files = {"config.json": '{"epochs": 3}', "holdout.json": '{"files": []}'}
    with open_run_dir(tmp_path / "runs", "efficientnet_lite0-quantum", None, files) as run_dir:
        assert run_dir.parent == tmp_path / "runs" and run_dir.name.endswith("-efficientnet_lite0-quantum")
        assert json.loads((run_dir / RUN_MARKER).read_text())["format"] >= 1
        assert {f: (run_dir / f).read_text() for f in files} == files
        assert (run_dir / runtime.LOCK_FILE).read_text() == str(os.getpid())
        assert runtime._held[run_dir.resolve()][1] == 1
    assert run_dir.resolve() not in runtime._held  # released when the block ends


def test_a_resumed_directory_is_held_from_the_start_cleared_of_stale_writes_and_reopened_as_is(tmp_path: Path) -> None:
    resumed = tmp_path / "20260102-030405-train"
    resumed.mkdir()
    (resumed / "config.json").write_text('{"epochs": 2}')
    torn = resumed / ".metrics.jsonl.x1y2z3.tmp"  # a write a killed process left, long ago
    torn.write_text("partial")
    os.utime(torn, (time.time() - 7200,) * 2)
    with held_run_dir(resumed):
        assert not torn.exists()
        assert runtime._held[resumed.resolve()][1] == 1
        with open_run_dir(tmp_path / "elsewhere", "train", resumed, {"config.json": '{"epochs": 4}'}) as run_dir:
            assert run_dir == resumed and runtime._held[resumed.resolve()][1] == 2  # one lock, held twice
            assert (run_dir / "config.json").read_text() == '{"epochs": 4}'
        assert not (tmp_path / "elsewhere").exists()
    assert resumed.resolve() not in runtime._held
