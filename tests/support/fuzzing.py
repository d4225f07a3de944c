"""Hypothesis settings and strategies shared by the fuzz tests: bounded example counts (the suite's time budget),
derandomized so that a run repeats the last one; QTRANSFER_FUZZ=N runs N times as many examples, with fresh ones."""
from __future__ import annotations

import math
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
TOML_SAFE = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.text(max_size=8), st.lists(st.integers(-3, 9), max_size=3),
                      st.lists(st.text(max_size=4), max_size=3))


def as_text(value: Any) -> str:
    """A value as it would be typed on a command line."""
    return repr(value) if isinstance(value, float) else str(value)


def disable_network(monkeypatch: Any) -> None:
    """Every connection and name lookup fails at once, as on an offline machine."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in the fuzz tests")

    for owner, name in ((socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)


# ---------------------------------------------------------------- values from a setting's declared rule

def valid_values(rule: Any) -> st.SearchStrategy[Any]:
    """Values a setting's rule (qtransfer.settings_schema) allows."""
    from qtransfer.settings_schema import FilePath, Flag, Interval, ListOf, Optional, StrOptions

    if isinstance(rule, Optional):
        return st.one_of(st.none(), valid_values(rule.rule))
    if isinstance(rule, Interval):
        specials = st.sampled_from(sorted(rule.special)) if rule.special else st.nothing()
        if rule.type is int:
            low = int(rule.low) if rule.low is not None else -(2**40)
            high = int(rule.high) if rule.high is not None else low + 2**40
            low, high = low + (not rule.low_ok(low)), high - (not rule.high_ok(high))
            return st.one_of(st.integers(low, min(high, low + 20)), st.sampled_from([low, high]), specials)
        low_f = float(rule.low) if rule.low is not None else -1e6
        high_f = float(rule.high) if rule.high is not None else 1e6
        return st.one_of(st.floats(low_f, high_f, exclude_min=not rule.low_ok(low_f),
                                   exclude_max=not rule.high_ok(high_f)), specials)
    if isinstance(rule, ListOf):
        return st.lists(valid_values(rule.item), min_size=max(1, rule.min_size), max_size=3)
    if isinstance(rule, StrOptions):
        return st.sampled_from(rule.options)
    if isinstance(rule, Flag):
        return st.booleans()
    if isinstance(rule, FilePath):
        return st.just("missing-folder")
    return st.text(CHARS, max_size=8)


def out_of_range(rule: Any) -> st.SearchStrategy[Any] | None:
    """Values of the right type that a setting's rule refuses (None: it refuses none, as a free string)."""
    from qtransfer.settings_schema import Interval, ListOf, Optional, StrOptions

    if isinstance(rule, Optional):
        return out_of_range(rule.rule)
    if isinstance(rule, Interval):
        outside: list[Any] = []
        if rule.low is not None:
            below = rule.type(rule.low) - (1 if rule.type is int else 1e-9 * max(1.0, abs(rule.low)))
            outside += [below, rule.type(rule.low) - 2**70 if rule.type is int else -1e300]
            if not rule.low_ok(rule.type(rule.low)):
                outside.append(rule.type(rule.low))
        if rule.high is not None:
            above = rule.type(rule.high) + (1 if rule.type is int else 1e-9 * max(1.0, abs(rule.high)))
            outside += [above, rule.type(rule.high) + 2**70 if rule.type is int else 1e300]
            if not rule.high_ok(rule.type(rule.high)):
                outside.append(rule.type(rule.high))
        if rule.type is float:
            outside += [math.inf, -math.inf, math.nan]
        outside = [v for v in outside if v not in rule.special]
        return st.sampled_from(outside) if outside else None
    if isinstance(rule, ListOf):
        bad = out_of_range(rule.item)
        empty = st.just([]) if rule.min_size else st.nothing()
        if bad is None:
            return empty if rule.min_size else None
        return st.one_of(empty, st.tuples(st.lists(valid_values(rule.item), max_size=2), bad).map(
            lambda pair: [*pair[0], pair[1]]))
    if isinstance(rule, StrOptions):
        return st.text(CHARS, max_size=8).filter(lambda t: t not in rule.options)
    return None


def wrong_types(rule: Any) -> st.SearchStrategy[Any]:
    """JSON values of a type a setting's rule does not take (what a --config file or config.json may hold)."""
    from qtransfer.settings_schema import Flag, Interval, ListOf, Optional

    inner = rule.rule if isinstance(rule, Optional) else rule
    if isinstance(inner, Interval):
        wrong = [True, "3", [1], {"a": 1}] + ([1.5, 2.0] if inner.type is int else [])
    elif isinstance(inner, Flag):
        wrong = [1, 0, "true", None, [True]]
    elif isinstance(inner, ListOf):
        wrong = [3, "a", {"a": 1}, [[1]], [None]]
    else:
        wrong = [3, 1.5, True, [], {"a": 1}]
    return st.sampled_from(wrong)
