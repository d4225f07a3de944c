"""Files written whole or not at all, and content hashes."""
from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            dead = (match is not None and match["host"] == _host() and not pid_alive(int(match["pid"]))
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
