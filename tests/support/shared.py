"""Directories built once per test run and shared by its pytest-xdist workers."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary directory all workers of this run share: the parent of each xdist worker's own, else its own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The directory `name` in the shared root, filled by `build` in whichever worker asks first; the others wait on
    its file lock and find it done. A build that failed is removed and tried again by the next to ask."""
    root = shared_root(tmp_path_factory)
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if path.exists():
                shutil.rmtree(path)
            path.mkdir()
            build(path)
            done.touch()
    return path
