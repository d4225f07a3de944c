"""Hypothesis settings and strategies shared by the fuzz tests: bounded example counts (the suite's time budget),
derandomized so that a run repeats the last one; QTRANSFER_FUZZ=N runs N times as many examples, with fresh ones."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = int(os.environ.get("QTRANSFER_FUZZ", "1"))


def bounded(examples: int) -> Callable[[Any], Any]:
    """Settings for a fuzz test: `examples` examples (times QTRANSFER_FUZZ), no deadline, repeatable."""
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# Text a user (or a script) may pass: anything but NUL, which no command line can hold, and lone surrogates.
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
HOSTILE_TEXT = st.one_of(
    st.text(CHARS, max_size=12),
    st.sampled_from(["", " ", "-", "--", "-1", "0", "nan", "inf", "-inf", "1e309", "9" * 40, "0x10", "1_000",
                     "ünïcødé", "日本語", "a b", "../..", "/", ".", "~", "$HOME", "{}", "[]", "null", "{\"a\": 1}",
                     "{\"shots\": -1}", "{", "'", "\"", "a=b", "a:b,c", "\t", "\n", "true"]),
)
INTS = st.one_of(st.integers(-3, 12), st.sampled_from([-(2**63), -(2**31), 2**31, 2**63, 10**30]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300]))


def as_text(value: Any) -> str:
    """A value as it would be typed on a command line."""
    return repr(value) if isinstance(value, float) else str(value)


def disable_network(monkeypatch: Any) -> None:
    """Every connection and name lookup fails at once, as on an offline machine."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in the fuzz tests")

    for owner, name in ((socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)
