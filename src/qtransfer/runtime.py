"""Where and with what a run executes: the device, the package versions, run directories, the cache folder."""
from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Iterator, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path

import torch

from qtransfer import distributed
from qtransfer.errors import DirectoryInUse, InputError, WriteError
from qtransfer.formats import RUN_DIR, RUN_MARKER
from qtransfer.storage import atomic_write_text, remove_stale_temp_files


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU; anything else is passed to torch.device. Under torchrun a bare
    CUDA device is this rank's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown device {name!r} ({err}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return distributed.local_device(device) if device.index is None else device


# Amplitudes (state size x rows) from which one simulation step gains from a second intra-op thread; below it, a
# second thread only waits, and stalls the step whenever another process holds a core (benchmarks/many_runs.py).
PARALLEL_AMPLITUDES = 2**14


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_cores() -> int:
    """Cores that no other process is using now, at least one: every core less the run queue beyond this process
    (the one-minute load average)."""
    others = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
    return max(1, cores() - round(others))


def threads_for(amplitudes: int, requested: int = 0) -> int:
    """Intra-op threads for a step that works on `amplitudes` numbers at once: `requested` when > 0; else one for small
    work (a tiny head's step is per-op overhead) and every core from PARALLEL_AMPLITUDES on."""
    if requested > 0:
        return requested
    return cores() if amplitudes >= PARALLEL_AMPLITUDES else 1


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[int]:
    """torch (and so scikit-learn, which follows it) on `n` intra-op threads inside the block; restored after."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("qtransfer", "torch", "torchvision", "numpy", "pennylane", "efficientnet-lite-pytorch", "timm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def new_run_dir(out: str | Path, name: str) -> Path:
    """<out>/<time>-<name>/, made fresh (a suffix -1, -2, ... when another run took the name this second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = name.replace(":", "-")  # timm:<model>; Windows allows no colon in a file name
    path = Path(out) / f"{stamp}-{name}"
    for i in range(1, 1000):
        try:
            path.mkdir(parents=True)
            _mark_run_dir(path)
            return path
        except FileExistsError:
            path = Path(out) / f"{stamp}-{name}-{i}"
        except OSError as err:
            raise WriteError(f"cannot create the run directory {path} ({err.strerror or err}); "
                             "pass --out DIR where you may write") from None
    raise WriteError(f"cannot create a new run directory in {out}")


def _mark_run_dir(path: Path) -> None:
    atomic_write_text(path / RUN_MARKER, json.dumps(RUN_DIR.stamp({"written_by": _own_version()}), indent=2))


def _own_version() -> str:
    try:
        return f"qtransfer {metadata.version('qtransfer')}"
    except metadata.PackageNotFoundError:
        return "qtransfer"


def check_run_dir(path: Path) -> int:
    """The format version of a run directory (1 when it has no marker, from before versions were recorded), or an
    InputError when this qtransfer cannot read it."""
    marker = Path(path) / RUN_MARKER
    if not marker.is_file():
        return 1
    try:
        values = json.loads(marker.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise InputError(f"{marker} is unreadable ({err}); it marks a qtransfer run directory: restore it or "
                         f"{RUN_DIR.redo}") from None
    return RUN_DIR.check(values, marker)


LOCK_FILE = ".qtransfer.lock"
_held: dict[Path, tuple[int, int]] = {}  # directories this process has locked: path -> (fd, depth)


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for this process: another process asking for it meanwhile is refused at once. The lock is an
    flock on run_dir/.qtransfer.lock, which the system releases when its process dies, even by SIGKILL, so none is
    ever stale. Nested holds in one process are one lock."""
    path = Path(run_dir).resolve()
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
    else:
        _held[path] = (_lock(path), 1)
    try:
        yield
    finally:
        fd, depth = _held.pop(path)
        if depth > 1:
            _held[path] = (fd, depth - 1)
        else:
            os.close(fd)  # releases the flock


@contextlib.contextmanager
def held_run_dir(path: Path) -> Iterator[None]:
    """A run directory being resumed, held by rank 0 from now on (another process continuing it is refused before
    any work) and cleared of the temporary files a killed writer left."""
    path = Path(path)
    if not (distributed.is_main() and path.is_dir()):
        yield
        return
    with run_dir_lock(path):
        remove_stale_temp_files(path)
        yield


@contextlib.contextmanager
def open_run_dir(out: str | Path, name: str, resume: Path | None, files: Mapping[str, str]) -> Iterator[Path]:
    """The directory every rank's run works in: on rank 0 `resume`, or a new <out>/<time>-<name>/, locked while the
    block runs and holding `files` (name -> text, written atomically in order: the settings first, so a kill at any
    moment leaves it resumable); the other ranks get its path from rank 0."""
    with contextlib.ExitStack() as held:
        path = None
        if distributed.is_main():
            path = Path(resume) if resume is not None else new_run_dir(out, name)
            held.enter_context(run_dir_lock(path))
            for file, text in files.items():
                atomic_write_text(path / file, text)
        shared = distributed.broadcast(path)
        assert shared is not None  # rank 0's path
        yield shared


def _lock(path: Path) -> int:
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # no flock on this platform (Windows): run unlocked
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DirectoryInUse(f"{path} is in use by another qtransfer process (pid {holder}); wait for it to finish, "
                             f"or stop it and run this again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def cache_root(cache_dir: str | Path = "") -> Path:
    """The feature cache folder: `cache_dir`, else $QTRANSFER_CACHE, else $XDG_CACHE_HOME/qtransfer, else
    ~/.cache/qtransfer."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("QTRANSFER_CACHE"):
        return Path(os.environ["QTRANSFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qtransfer"
