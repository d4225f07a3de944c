"""Every bad input and fault ends in a clear error or a safe recovery, and nothing is lost."""
from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.cli import in_process
from support.real_images import real_subset
from support.runs import metric_rows
from torch import nn

import qtransfer.storage
from qtransfer.config import TrainConfig
from qtransfer.data.images import ImageFolderDataset, load_splits
from qtransfer.data.transforms import reference_transform
from qtransfer.errors import NonFiniteLoss, WeightsError
from qtransfer.models.backbones import create_backbone
from qtransfer.models.heads import HEADS
from qtransfer.training.checkpoints import load_checkpoint
from qtransfer.training.run import train
from qtransfer.training.trained import TrainedModel

# ------------------------------------------------------------------------------------- helpers


def small_dataset(hymenoptera: Path, root: Path, per_class: int = 3, splits=("train", "val")) -> Path:
    """A few real images per class and split, copied (the tests damage them)."""
    return real_subset(hymenoptera, root, dict.fromkeys(splits, per_class), copy=True)


def a_real_jpeg(hymenoptera: Path) -> bytes:
    return sorted((hymenoptera / "train" / "ants").glob("*.jpg"))[0].read_bytes()


def skipped(root: Path) -> dict[str, str]:
    with pytest.warns(UserWarning, match="skipped"):
        ds = ImageFolderDataset(root)
    return {path.name: reason for path, reason in ds.skipped}


def config(data: Path, out: Path, cache: Path, **changes) -> TrainConfig:
    values = {"data": str(data), "backbone": "efficientnet_lite0", "epochs": 2, "cache_dir": str(cache),
              "out": str(out), "num_workers": 0}
    return TrainConfig(**{**values, **changes})


def cli_together(*commands: list[str], timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """`python -m qtransfer ARGS` processes, for what only a process shows (exit codes), started at once: each
    spends seconds importing torch on one core, so side by side they take about the time of one. In order."""
    procs = [subprocess.Popen([sys.executable, "-m", "qtransfer", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


# ------------------------------------------------------------------------------------- bad data


def test_zero_byte_file_is_skipped_and_listed(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    (root / "ants" / "empty.jpg").touch()
    assert skipped(root) == {"empty.jpg": "empty file"}


def test_truncated_jpeg_is_skipped(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    data = a_real_jpeg(hymenoptera)
    (root / "ants" / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert skipped(root)["cut.jpg"].startswith("unreadable: image file is truncated")


def test_html_saved_with_an_image_extension_is_skipped(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    (root / "bees" / "page.jpg").write_text("<!doctype html><html><body>403 Forbidden</body></html>")
    (root / "bees" / "notes.png").write_text("just text")
    assert skipped(root) == {"page.jpg": "not an image (format not recognised)",
                             "notes.png": "not an image (format not recognised)"}


def test_image_with_the_wrong_extension_is_read_by_its_content(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(root / "ants" / "really_a_png.jpg", format="PNG")
    ds = ImageFolderDataset(root)
    assert ds.skipped == [] and ds.counts() == {"ants": 4, "bees": 3}


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width × height 1-bit pixels, with almost no pixel data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_skipped_without_decoding(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    (root / "bees" / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # 10^10 pixels
    t = time.perf_counter()
    reason = skipped(root)["bomb.png"]
    assert "decompression bomb" in reason and time.perf_counter() - t < 30


@pytest.mark.parametrize("mode, make", [
    ("L", lambda: Image.new("L", (50, 40), 90)),
    ("P", lambda: Image.new("RGB", (50, 40), (200, 10, 10)).convert("P")),
    ("RGBA", lambda: Image.new("RGBA", (50, 40), (10, 200, 10, 80))),
    ("CMYK", lambda: Image.new("CMYK", (50, 40), (0, 255, 255, 0))),
    ("I;16", lambda: Image.new("I;16", (50, 40), 40_000)),
])
def test_grey_palette_alpha_cmyk_and_16_bit_images_are_converted_not_skipped(tmp_path: Path, mode: str, make) -> None:
    for cls in ("a", "b"):
        ext = "jpg" if mode == "CMYK" else "png"
        image = make()
        assert image.mode == mode
        (tmp_path / cls).mkdir()
        image.save(tmp_path / cls / f"x.{ext}")
    ds = ImageFolderDataset(tmp_path, transform=lambda im: im)
    assert ds.skipped == []
    image, _ = ds[0]
    assert image.mode == "RGB" and image.size == (50, 40)


def test_names_with_spaces_and_non_ascii_characters_are_read(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    data = a_real_jpeg(hymenoptera)
    for name in ("ant photos.jpg", "fourmi été.jpg", "蜂 1.jpg", "ñ – dash.JPG"):
        (root / "ants" / name).write_bytes(data)
    ds = ImageFolderDataset(root, transform=reference_transform())
    names = [p.name for p, _ in ds.samples]
    assert {"ant photos.jpg", "fourmi été.jpg", "蜂 1.jpg", "ñ – dash.JPG"} <= set(names) and ds.skipped == []
    assert ds[names.index("蜂 1.jpg")][0].shape == (3, 224, 224)


def test_the_real_dataset_file_with_a_space_is_read(hymenoptera: Path) -> None:
    ds = ImageFolderDataset(hymenoptera / "train", check=False)
    assert any(" " in p.name for p, _ in ds.samples)


def test_an_empty_class_folder_stops_before_any_work(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path)
    (root / "train" / "wasps").mkdir()
    (root / "val" / "wasps").mkdir()
    with pytest.raises(ValueError, match=r"wasps has no readable images"):
        load_splits(root)


def test_a_split_with_one_class_is_refused(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / split / "ants").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "ants" / "a.png")
    with pytest.raises(ValueError, match="classification needs at least 2"):
        load_splits(tmp_path)


def test_class_sets_that_differ_between_train_and_val_are_listed(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path)
    (root / "val" / "bees").rename(root / "val" / "wasps")
    with pytest.raises(ValueError, match=r"only in train: \['bees'\]; only in val: \['wasps'\]"):
        load_splits(root)


def test_a_missing_val_split_is_refused_with_the_expected_layout(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"no val/ \(or validation/\) folder"):
        load_splits(root)


def test_images_nested_one_level_deeper_are_found(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path / "download" / "hymenoptera_data")
    (root / "train" / "ants" / "more").mkdir()
    shutil.copy(next((root / "train" / "bees").glob("*.jpg")), root / "train" / "ants" / "more" / "deeper.jpg")
    splits = load_splits(tmp_path / "download")  # the archive's own folder inside the one given
    assert splits["train"].counts() == {"ants": 4, "bees": 3}


def test_an_unreadable_file_is_skipped_as_permission_denied(hymenoptera: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    locked = root / "ants" / "locked.jpg"
    locked.write_bytes(a_real_jpeg(hymenoptera))
    locked.chmod(0)
    real_open = Image.open

    def refuse(fp, *args, **kwargs):
        if Path(fp) == locked:  # chmod cannot stop root, who runs the tests in containers
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refuse)
    assert skipped(root) == {"locked.jpg": "permission denied"}


def test_a_symlink_loop_is_not_followed_forever(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path, splits=("train",)) / "train"
    os.symlink(root / "ants", root / "ants" / "again")  # ants/again -> ants
    os.symlink(root / "bees" / "x.jpg", root / "bees" / "x.jpg.loop")
    os.symlink(root / "bees" / "loop.jpg", root / "bees" / "loop.jpg")  # a link to itself
    with pytest.warns(UserWarning) as record:
        ds = ImageFolderDataset(root)
    assert any("symbolic link loop" in str(w.message) for w in record)
    assert ds.counts() == {"ants": 3, "bees": 3}
    assert [p.name for p, _ in ds.skipped] == ["loop.jpg"]


def test_skipped_files_are_listed_in_the_run_summary(hymenoptera: Path, shared_cache: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path / "data")
    (root / "train" / "ants" / "empty.jpg").touch()
    with pytest.warns(UserWarning, match="empty.jpg: empty file"):
        run_dir, summary = train(config(root, tmp_path / "runs", shared_cache, epochs=1))
    assert summary["skipped"] == [{"path": str(root / "train" / "ants" / "empty.jpg"), "reason": "empty file"}]
    assert json.loads((run_dir / "summary.json").read_text())["skipped"] == summary["skipped"]


# ------------------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("changes, message", [
    ({"n_qubits": 0}, "n_qubits must be >= 1, got 0"),
    ({"n_qubits": -3}, "n_qubits must be >= 1, got -3"),
    ({"depth": -1}, "depth must be >= 0, got -1"),
    ({"lr": 0.0}, "learning rate must be > 0, got 0.0"),
    ({"lr": -1e-3}, "learning rate must be > 0"),
    ({"batch_size": 0}, "batch size must be >= 1, got 0"),
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"backbone": "resnet81"}, "unknown backbone 'resnet81'. Did you mean 'resnet18'?"),
    ({"head": "quantun"}, "unknown head 'quantun'. Did you mean 'quantum'?"),
    ({"template": "strongly"}, "unknown template 'strongly'. Did you mean 'strongly_entangling'?"),
    ({"backend": "qiskit"}, "unknown backend 'qiskit'; use 'torch' (built-in) or 'pennylane:<device>'"),
    ({"backend": "pennylane:braket.local.qubit"}, "provided by the package 'amazon-braket-pennylane-plugin'"),
])
def test_bad_settings_are_refused_naming_the_allowed_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(data="somewhere", **changes).validate()
    assert message in str(err.value)


def test_more_qubits_than_memory_holds_are_refused_with_an_estimate() -> None:
    with pytest.raises(ValueError, match=r"40 qubits need about .* GiB .* use at most \d+ qubits here"):
        TrainConfig(data="somewhere", n_qubits=40).validate()


def test_the_cli_refuses_bad_settings_before_making_anything(tmp_path: Path, capsys) -> None:
    t = time.perf_counter()
    code, _, stderr = in_process(capsys, "train", "--data", str(tmp_path), "--qubits", "36",
                                 "--out", str(tmp_path / "runs"))
    assert code == 1 and "36 qubits need about" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() and time.perf_counter() - t < 120


# ------------------------------------------------------------------------------------- bad files of ours


class Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_weights_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(create_backbone("resnet18", weights=None).model.state_dict(), path)
    with pytest.raises(WeightsError, match="expected f37072fd"):
        create_backbone("resnet18", weights=path)


def test_a_truncated_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(create_backbone("resnet18", weights=None).model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match=str(path)):
        create_backbone("resnet18", weights=path)


def test_a_hostile_pickle_as_weights_never_runs(tmp_path: Path) -> None:
    path, marker = tmp_path / "weights.pth", tmp_path / "pwned"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(WeightsError):
        create_backbone("resnet18", weights=path)
    torch.save({"x": Payload(marker)}, tmp_path / "zip.pth")
    with pytest.raises(WeightsError):
        create_backbone("resnet18", weights=tmp_path / "zip.pth")
    assert not marker.exists()


def test_a_hostile_or_foreign_checkpoint_is_refused_and_never_runs(finished_run, tmp_path: Path, capsys) -> None:
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "pwned"
    torch.save({"head": Payload(marker), "classes": [], "config": {}}, copy / "best.pt")
    with pytest.raises(ValueError, match=r"not a readable qtransfer checkpoint.*it was not loaded"):
        TrainedModel.load(copy)
    assert not marker.exists()
    torch.save([1, 2, 3], copy / "best.pt")
    with pytest.raises(ValueError, match="not a qtransfer checkpoint"):
        TrainedModel.load(copy)
    (copy / "best.pt").write_text("{}")
    with pytest.raises(ValueError, match="not a readable qtransfer checkpoint"):
        TrainedModel.load(copy)
    code, _, stderr = in_process(capsys, "evaluate", str(copy))
    assert code == 1 and "Traceback" not in stderr and "best.pt" in stderr


def test_a_truncated_last_checkpoint_is_refused_on_resume(finished_run, tmp_path: Path) -> None:
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = (copy / "last.pt").read_bytes()
    (copy / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"last.pt is not a readable qtransfer checkpoint.*Start a new run"):
        train(TrainConfig(), resume=copy)


def test_a_checkpoint_of_another_head_shape_or_class_list_says_what_differs(finished_run, tmp_path: Path) -> None:
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "n_qubits": 6}))
    with pytest.raises(ValueError, match=r"pre_net.weight': \(\(4, 1280\), \(6, 1280\)\)"):
        TrainedModel.load(copy)
    (copy / "config.json").write_text(json.dumps(cfg))
    state = torch.load(copy / "last.pt", weights_only=True)
    torch.save({**state, "classes": ["ants", "wasps"]}, copy / "last.pt")
    with pytest.raises(ValueError, match=r"checkpoint classes \['ants', 'wasps'\] differ from the data's"):
        train(TrainConfig(), resume=copy)


@pytest.mark.slow
def test_a_corrupt_cache_entry_is_recomputed(hymenoptera: Path, tmp_path: Path) -> None:
    root = small_dataset(hymenoptera, tmp_path / "data", per_class=2)
    first, _ = train(config(root, tmp_path / "runs", tmp_path / "cache", epochs=1))
    shards = list((tmp_path / "cache").rglob("*.npy"))
    assert shards
    for shard in shards:
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.warns(UserWarning, match="is corrupt"):
        _, summary = train(config(root, tmp_path / "runs", tmp_path / "cache", epochs=1))
    assert summary["features_computed"] == {"train": 4, "val": 4}
    assert summary["best_val_acc"] == json.loads((first / "summary.json").read_text())["best_val_acc"]


# ------------------------------------------------------------------------------------- faults during a run


METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.fixture(scope="module")
def interrupted_runs(hymenoptera: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[int, tuple[int, str, Path]]:
    """For each signal, a `python -m qtransfer train` process sent that signal once it has finished 2 epochs: its
    exit code, stderr and output folder. The processes run side by side, one torch thread each (two threads each
    would contend for the two cores at every op of the small head)."""
    runs = {}
    for signum in SIGNALS:
        folder = tmp_path_factory.mktemp(f"interrupted-{signum}")
        out = folder / "runs"
        args = ["train", "--data", str(hymenoptera), "--backbone", "efficientnet_lite0", "--cache-dir",
                str(shared_cache), "--out", str(out), "--workers", "0", "--epochs", "8", "--qubits", "7",
                "--name", "interrupted"]
        stderr = (folder / "stderr.txt").open("w")
        # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited "ignore": restore the
        # default so the test checks qtransfer's handling however pytest itself was started.
        proc = subprocess.Popen([sys.executable, "-m", "qtransfer", *args], stdout=subprocess.DEVNULL, stderr=stderr,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        runs[signum] = (proc, out, folder / "stderr.txt", stderr)
    waiting = set(runs)
    deadline = time.time() + 300
    while waiting and time.time() < deadline:
        for signum in list(waiting):
            proc, out, _, _ = runs[signum]
            metrics = list(out.glob("*/metrics.jsonl"))
            if (metrics and len(metrics[0].read_text().splitlines()) >= 2) or proc.poll() is not None:
                proc.send_signal(signum)
                waiting.discard(signum)
        time.sleep(0.05)
    results = {}
    for signum, (proc, out, stderr_path, stderr) in runs.items():
        if signum in waiting:
            proc.send_signal(signum)
        proc.wait(timeout=120)
        stderr.close()
        results[signum] = (proc.returncode, stderr_path.read_text(), out)
    return results


@pytest.fixture(scope="module")
def straight_run(hymenoptera: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run that an interrupted and resumed one must equal (the same for both signals)."""
    run_dir, _ = train(config(hymenoptera, tmp_path_factory.mktemp("straight"), shared_cache, epochs=8, n_qubits=7))
    return run_dir


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.subprocess
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_mid_run_keeps_every_finished_epoch_and_resume_matches(
    signum: int, interrupted_runs: dict, straight_run: Path, capsys
) -> None:
    returncode, stderr, out = interrupted_runs[signum]
    assert returncode == 130, stderr
    assert "Continue with: qtransfer train --resume" in stderr and "Traceback" not in stderr
    run_dir = next(out.glob("*-interrupted"))
    done = metric_rows(run_dir, METRICS)  # whole lines only
    state = load_checkpoint(run_dir / "last.pt", resume=True)
    assert 2 <= len(done) < 8 and len(state["rows"]) == len(done)
    assert not list(run_dir.glob(".*.tmp"))

    code, _, stderr = in_process(capsys, "train", "--resume", str(run_dir))  # the command the message gives
    assert code == 0, stderr
    ours, theirs = metric_rows(run_dir, METRICS), metric_rows(straight_run, METRICS)
    assert [r["epoch"] for r in ours] == list(range(1, 9))
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "head" in obj:  # a checkpoint, not a feature-cache shard
            calls["n"] += 1
            if calls["n"] > 2:  # epoch 1 writes best.pt and last.pt; then the disk is full
                f.write(b"partial bytes")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(qtransfer.storage.torch, "save", save_until_full)
    with pytest.raises(OSError, match=r"No space left on device.*previous (best|last)\.pt is intact.*--resume"):
        train(config(hymenoptera, tmp_path, shared_cache, epochs=3))
    monkeypatch.setattr(qtransfer.storage.torch, "save", real_save)
    run_dir = next(tmp_path.iterdir())
    last = load_checkpoint(run_dir / "last.pt", resume=True)
    assert [r["epoch"] for r in last["rows"]] == [1] and len(metric_rows(run_dir, METRICS)) == 1
    assert not list(run_dir.glob(".*.tmp"))
    _, summary = train(TrainConfig(), resume=run_dir)  # and the run can go on
    assert summary["epochs"] == 3


def test_a_nan_loss_stops_naming_epoch_and_step_and_keeps_the_best(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class GoesNaN(nn.Module):
        calls = 0

        def __init__(self, in_features: int, n_classes: int, **_):
            super().__init__()
            self.fc = nn.Linear(in_features, n_classes)

        def forward(self, x):
            GoesNaN.calls += 1 if self.training else 0
            out = self.fc(x)
            return out * float("nan") if self.training and GoesNaN.calls > 61 + 5 else out

    monkeypatch.setitem(HEADS, "goes_nan", GoesNaN)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at epoch 2, step 6; the best checkpoint so far \(epoch 1\)"):
        train(config(hymenoptera, tmp_path, shared_cache, head="goes_nan", epochs=3))
    run_dir = next(tmp_path.iterdir())
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1


# ------------------------------------------------------------------------------------- fuzzing


@pytest.mark.slow
def test_mutated_images_never_crash_the_data_path(hymenoptera: Path, tmp_path: Path) -> None:
    rng = random.Random(1234)
    sources = sorted((hymenoptera / "train").rglob("*.jpg"))[:20] + sorted((hymenoptera / "val").rglob("*.png"))
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    for i in range(300):
        data = bytearray(rng.choice(sources).read_bytes())
        kind = rng.random()
        if kind < 0.4:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.7:
            data = data[: rng.randrange(1, len(data))]
        else:
            start = rng.randrange(len(data))
            data[start:start + rng.randint(1, 4096)] = os.urandom(rng.randint(0, 4096))
        (tmp_path / ("a" if i % 2 else "b") / f"m{i:03d}.jpg").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="skipped"):
        ds = ImageFolderDataset(tmp_path, transform=reference_transform())
    assert len(ds) + len(ds.skipped) == 300 and ds.skipped
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    assert sum(len(x) for x, _ in loader) == len(ds)


# ------------------------------------------------------------------------------------- exit codes


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.subprocess
def test_exit_codes_user_error_usage_error_and_debug(tmp_path: Path) -> None:
    user, usage, debug = cli_together(
        ["train", "--data", str(tmp_path / "nowhere"), "--backbone", "efficientnet_lite0"],
        ["train", "--epochs", "many"],
        ["--debug", "train", "--data", str(tmp_path / "nowhere"), "--backbone", "efficientnet_lite0"],
    )
    assert user.returncode == 1 and "Traceback" not in user.stderr and "does not exist" in user.stderr
    assert usage.returncode == 2 and "invalid int value" in usage.stderr
    assert debug.returncode == 1 and "Traceback" in debug.stderr
