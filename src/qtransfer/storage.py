"""Files written whole or not at all, and content hashes.

Fault injection, for crash tests (tests/support/crash_harness.py, benchmarks/kill_campaign.py); read once, when this
module is imported, and removed from the environment then, so processes this one starts do not inherit them:

- ``QTRANSFER_FAULT_WRITE=N`` kills this process with SIGKILL at its N-th atomic write (counted from 1, in this
  process), after the temporary file is written whole and synced, before it is renamed over its target: the last
  instant a real kill could lose the write, and the one that leaves the most behind (a complete, plausible file
  under a temporary name that recovery must remove, never read). ``N:torn`` first cuts the temporary file to half
  its length, as a kill in the middle of writing it would.
- ``QTRANSFER_FAULT_LOG=PATH`` appends each atomic write's target path to PATH, one line per write, before its
  rename: the count of a clean run's writes, from which the kills' N are chosen.

Unset, they cost one comparison per atomic write.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

from qtransfer.errors import InputError

FAULT_WRITE = "QTRANSFER_FAULT_WRITE"
FAULT_LOG = "QTRANSFER_FAULT_LOG"


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], object]) -> None:
    """Write `path` through `write(file)` into a temporary file beside it, then rename over it.

    A crash or a full disk leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_writer()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if _FAULT is not None:
                _FAULT.reached(path, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class _Fault:
    """The injected fault of this process: the atomic write to die at (0: none), whether to tear it, the log."""

    kill_at: int = 0
    torn: bool = False
    log: str | None = None
    _count: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    def reached(self, path: Path, f: io.BufferedWriter) -> None:
        """Log this write; at the chosen one, (tear the temporary file and) SIGKILL this process."""
        n = self._count()
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"{path}\n")
        if n == self.kill_at:
            if self.torn:
                f.truncate(f.tell() // 2)
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
            time.sleep(60)  # the signal is delivered before this returns; never go on to the rename


def _fault_from_environment() -> _Fault | None:
    write, log = os.environ.pop(FAULT_WRITE, ""), os.environ.pop(FAULT_LOG, "") or None
    if not write and log is None:
        return None
    match = re.fullmatch(r"(\d+)(:torn)?", write.strip())
    if write and (match is None or int(match[1]) < 1):
        raise InputError(f"{FAULT_WRITE}={write!r} is not N or N:torn with N >= 1 (the atomic write to die at); "
                         f"set it so, or unset it")
    return _Fault(int(match[1]) if match else 0, bool(match and match[2]), log)


_FAULT = _fault_from_environment()


# A temporary file left by a writer that may still be alive elsewhere (another machine) is removed after this long.
STALE_SECONDS = 3600.0
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.(?P<host>[A-Za-z0-9_-]+)\.[a-z0-9_]+\.tmp$")


def _writer() -> str:
    """'<pid>.<host>': who writes a temporary file, so a later process can tell whether its writer is dead."""
    return f"{os.getpid()}.{_host()}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def remove_stale_temp_files(directory: Path, max_age: float = STALE_SECONDS) -> list[Path]:
    """Delete the `.<name>.*.tmp` files of atomic writes that died (SIGKILL, power loss) in `directory`: those
    whose writer process on this host is gone, and any not touched for `max_age` seconds. Returns them."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        match = _TEMP_NAME.match(tmp.name)
        try:
            dead = ((match is not None and match["host"] == _host() and not pid_alive(int(match["pid"])))
                    or time.time() - tmp.stat().st_mtime > max_age)
            if dead:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer renamed it, or another process removed it first
            pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (always True on Windows, where signal 0 would kill it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    except OSError:
        return False
    return True


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(path: Path) -> str:
    """file_sha256, remembered for this process while the file keeps its size and modification time."""
    stat = Path(path).stat()
    return _remembered_sha256(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@cache
def _remembered_sha256(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)
