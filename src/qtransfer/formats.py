"""Format versions of the files qtransfer writes, and the one check of a version read back. A file written before
versions were recorded holds none and is version 1."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtransfer.errors import InputError

KEY = "format"


@dataclass(frozen=True)
class FileFormat:
    """One kind of file: the versions this qtransfer reads, and what to do with one it cannot."""

    what: str
    current: int
    oldest: int
    redo: str  # what makes a file of the current format again, e.g. "retrain the run"

    def version(self, values: Any, path: Path | str) -> int:
        """The format version recorded in `values` (a dict read from `path`); 1 when it records none."""
        version = values.get(KEY, 1) if isinstance(values, dict) else 1
        if isinstance(version, bool) or not isinstance(version, int):
            raise InputError(f"{path} records format {version!r}, not a version number: it is damaged or not "
                             f"a {self.what} qtransfer wrote; {self.redo}")
        return version

    def check(self, values: Any, path: Path | str) -> int:
        """The version of `values` read from `path`, or an InputError saying which it is and what to do."""
        version = self.version(values, path)
        reads = (f"this one reads format {self.current}" if self.oldest == self.current
                 else f"this one reads formats {self.oldest} to {self.current}")
        if version > self.current:
            raise InputError(f"{path} was written by a newer qtransfer ({self.what} format {version}; {reads}): "
                             f"upgrade qtransfer (pip install -U qtransfer), or {self.redo} with this one")
        if version < self.oldest:
            raise InputError(f"{path} was written by an older qtransfer ({self.what} format {version}; {reads}): "
                             f"{self.redo}")
        return version

    def readable(self, values: Any, path: Path | str) -> bool:
        """Whether this qtransfer reads the version of `values` (for files it may skip, such as cache shards)."""
        try:
            self.check(values, path)
        except InputError:
            return False
        return True

    def stamp(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with the current format version recorded."""
        return {KEY: self.current, **values}


CHECKPOINT = FileFormat("checkpoint", current=1, oldest=1, redo="retrain the run")
CACHE_SHARD = FileFormat("feature cache shard", current=1, oldest=1, redo="let this qtransfer recompute it")
HOLDOUT = FileFormat("hold-out list", current=1, oldest=1,
                     redo="carve a new hold-out with --holdout FRACTION instead of --holdout-list")
RUN_DIR = FileFormat("run directory", current=1, oldest=1, redo="start a new run")

RUN_MARKER = "qtransfer.json"  # in every run directory: {"format": RUN_DIR.current, ...}
