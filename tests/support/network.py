"""Local addresses nothing answers on, for the offline and unreachable-server paths."""
from __future__ import annotations

import socket


def unused_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url(file_name: str) -> str:
    """A URL for `file_name` on a local port nothing listens on."""
    return f"http://127.0.0.1:{unused_port()}/{file_name}"
