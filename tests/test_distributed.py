"""torchrun with 2 processes on gloo (127.0.0.1) gives the single-process cache, metrics and tables."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest
import torch
from support.network import unused_port

from qtransfer import distributed
from qtransfer.cli import main
from qtransfer.features.cache import FeatureCache

BACKBONE = ["--backbone", "efficientnet_lite0"]


def subset(hymenoptera: Path, root: Path, train: int, val: int) -> Path:
    """The first real images of each class: `train` and `val` per class."""
    for split, n in (("train", train), ("val", val)):
        for name in ("ants", "bees"):
            (root / split / name).mkdir(parents=True)
            for path in sorted((hymenoptera / split / name).glob("*.jpg"))[:n]:
                shutil.copy(path, root / split / name)
    return root


def launch(*args: str, cwd: Path) -> subprocess.Popen:
    """Start `torchrun --nproc-per-node 2 -m qtransfer ARGS` on 127.0.0.1, one CPU thread per process (torchrun's
    default). Its launcher spends its first seconds importing torch on one core: the test's single-process side
    runs meanwhile, then `finish` waits for the launch."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(unused_port()), "-m", "qtransfer", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QTRANSFER_DIST_TIMEOUT": "120"}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m qtransfer ARGS`, to its end."""
    return finish(launch(*args, cwd=cwd))


@contextmanager
def one_thread() -> Iterator[None]:
    """This process at one CPU thread, as each torchrun process: CPU kernels may round differently per thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_contents(root: Path) -> tuple[list[str], torch.Tensor]:
    (folder,) = (root / "features").iterdir()
    cache = FeatureCache(root, folder.name)
    keys = sorted(cache.lookup())
    return keys, cache.mapped(keys).tensor()


@pytest.fixture(scope="module")
def data(hymenoptera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 train and 16 val images: more than one 32-image batch, so both ranks extract."""
    return subset(hymenoptera, tmp_path_factory.mktemp("subset"), train=20, val=8)


@pytest.fixture(scope="module")
def single_process_cache(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The data's features extracted by one process at one thread (as each torchrun process), and what it printed;
    the single-process side of every comparison below starts from a copy of it."""
    root = tmp_path_factory.mktemp("one-process-cache")
    printed = io.StringIO()
    with one_thread(), redirect_stdout(printed):
        assert main(["extract", "--data", str(data), *BACKBONE, "--cache-dir", str(root), "--batch-size", "8"]) == 0
    return root, printed.getvalue()


def warm_cache(single_process_cache: tuple[Path, str], where: Path) -> Path:
    shutil.copytree(single_process_cache[0], where)
    return where


@pytest.mark.timeout(300)
@pytest.mark.distributed
def test_distributed_extraction_equals_single_process_bit_for_bit(data: Path, single_process_cache,
                                                                  tmp_path: Path) -> None:
    one_root, printed = single_process_cache
    assert "56 images, 56 computed" in printed
    done = torchrun("extract", "--data", str(data), *BACKBONE, "--cache-dir", str(tmp_path / "two"),
                    "--batch-size", "8", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()  # rank 0 alone prints
    assert json.loads(line)["computed"] == 56
    shards = list((tmp_path / "two" / "features").rglob("*.npy"))
    assert len(shards) == 4  # each of the 2 ranks wrote a shard for each of the 2 splits
    keys_one, one = cache_contents(one_root)
    keys_two, two = cache_contents(tmp_path / "two")
    assert keys_one == keys_two and len(keys_one) == 56
    assert torch.equal(one, two)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
@pytest.mark.distributed
def test_distributed_training_matches_single_process(data: Path, single_process_cache, tmp_path: Path) -> None:
    flags = ["--data", str(data), *BACKBONE, "--epochs", "2", "--batch-size", "4"]
    # a cold cache: train extracts first, the two ranks sharing the images
    launched = launch("train", *flags, "--cache-dir", str(tmp_path / "two"), "--out", str(tmp_path / "two-runs"),
                      cwd=tmp_path)
    one = warm_cache(single_process_cache, tmp_path / "one")
    with one_thread():
        assert main(["train", *flags, "--cache-dir", str(one), "--out", str(tmp_path / "one-runs")]) == 0
    (single,) = (tmp_path / "one-runs").iterdir()
    done = finish(launched)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "two-runs").iterdir()  # rank 0 alone made a run directory
    assert done.stdout.count("best epoch") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["features_computed"] == {"train": 40, "val": 16}
    for a, b in zip(metrics(single), metrics(run), strict=True):
        assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    assert summary["best_epoch"] == json.loads((single / "summary.json").read_text())["best_epoch"]


@pytest.mark.timeout(300)
@pytest.mark.distributed
def test_distributed_compare_equals_single_process_table(data: Path, single_process_cache, tmp_path: Path) -> None:
    flags = ["--data", str(data), *BACKBONE, "--epochs", "2", "--heads", "quantum", "classical", "--seeds", "2",
             "--cache-dir", str(warm_cache(single_process_cache, tmp_path / "cache"))]
    launched = launch("compare", *flags, "--out", str(tmp_path / "two"), "--tensorboard", cwd=tmp_path)
    with one_thread():
        assert main(["compare", *flags, "--out", str(tmp_path / "one")]) == 0
    done = finish(launched)
    assert done.returncode == 0, done.stderr
    (single,), (run,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    untimed = lambda d: re.sub(r"\| \d+\.\d\d \|$", "| s |", (d / "compare.md").read_text(), flags=re.M)  # noqa: E731
    assert untimed(run) == untimed(single) and "| `classical` | 2 |" in untimed(run)
    assert (run / "compare.png").exists()
    # rank 0 alone tracks: one event file for the comparison, a child per head and seed, whichever rank fitted it
    assert len(list(run.glob("events.out.tfevents*"))) == 1
    children = sorted(p.name for p in (run / "tensorboard").iterdir())
    assert children == ["classical-seed42", "classical-seed43", "quantum-seed42", "quantum-seed43"]
    assert all(len(list((run / "tensorboard" / c).glob("events.out.tfevents*"))) == 1 for c in children)

    def rows(d: Path) -> list[dict]:
        runs = json.loads((d / "compare.json").read_text())["runs"]
        return [{k: v for k, v in r.items() if k != "train_s"} for r in runs]

    assert len(rows(run)) == 4 and rows(run) == rows(single)


@pytest.mark.timeout(300)
@pytest.mark.distributed
def test_distributed_sweep_equals_single_process_sweep(data: Path, single_process_cache, tmp_path: Path) -> None:
    flags = ["--data", str(data), *BACKBONE, "--epochs", "2", "--depths", "1", "--qubit-counts", "2", "--seeds", "2",
             "--cache-dir", str(warm_cache(single_process_cache, tmp_path / "cache"))]
    launched = launch("sweep", *flags, "--out", str(tmp_path / "two"), cwd=tmp_path)  # both read the cached features
    with one_thread():
        assert main(["sweep", *flags, "--out", str(tmp_path / "one")]) == 0
    done = finish(launched)
    assert done.returncode == 0, done.stderr
    (single,), (run,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    one, two = (json.loads((d / "sweep.json").read_text()) for d in (single, run))
    untimed = lambda runs: [{k: v for k, v in r.items() if k != "train_s"} for r in runs]  # noqa: E731
    assert len(two["runs"]) == 8 and untimed(two["runs"]) == untimed(one["runs"])
    for axis in ("depth", "qubits"):
        for kind, points in one["axes"][axis].items():
            if kind != "fixed":
                assert [p["best_val_acc"] for p in two["axes"][axis][kind]] == [p["best_val_acc"] for p in points]
    assert (run / "sweep.png").exists() and (run / "sweep.md").exists()


def test_a_global_batch_the_processes_cannot_share_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match=r"--batch-size 4 .* among the 3 processes; use a multiple of 3"):
        distributed.check_batch(4)
    distributed.check_batch(6)


@pytest.mark.timeout(300)
@pytest.mark.distributed
def test_an_error_on_every_rank_ends_the_launch_with_the_message(data: Path, tmp_path: Path) -> None:
    done = torchrun("train", "--data", str(data), *BACKBONE, "--batch-size", "3", "--out", str(tmp_path / "runs"),
                    "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert done.returncode != 0
    assert "qtransfer train (rank 1): error: --batch-size 3" in done.stderr  # each rank reports, none hangs
    assert "must divide evenly among the 2 processes" in done.stderr
    assert not (tmp_path / "runs").exists()
