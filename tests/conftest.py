"""Shared fixtures: the real dataset, and a local HTTP server standing in for the internet."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where the real data lives: $QTRANSFER_DATA, else ../shared/data beside the project."""
    return Path(os.environ.get("QTRANSFER_DATA", ROOT.parent / "shared" / "data"))


def require_path(path: Path, what: str) -> Path:
    """Return `path`; when it is missing, fail under CI=true (the data must be there) and skip elsewhere."""
    if path.exists():
        return path
    msg = f"{what} not found at {path}; set QTRANSFER_DATA to the folder that holds it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    """The real ants/bees dataset (train/ and val/)."""
    return require_path(shared_data_dir() / "hymenoptera_data", "the hymenoptera dataset")


@pytest.fixture(scope="session")
def mari2019() -> Path:
    """The paper's pretrained CV weights (trained_params.npy, circuit_A.npy)."""
    return require_path(shared_data_dir() / "mari2019", "the paper's pretrained CV weights (mari2019/)")


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], str]]:
    """Start a server on 127.0.0.1 for a directory; returns its base URL (no trailing slash)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the whole session, so real-data tests extract each backbone's features once."""
    return tmp_path_factory.mktemp("shared-feature-cache")
