"""What the benchmark scripts share: best-of timing and printing (and saving) their JSON."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def best_of(fn: Callable[[], object], repeats: int = 3, warm_up: bool = True) -> float:
    """Shortest of `repeats` timed calls, in seconds, after one untimed call (compilation, caches)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def logged(point: dict) -> dict:
    """`point`, after printing it as one JSON line on stderr: each point shows as soon as it is measured."""
    print(json.dumps(point), file=sys.stderr, flush=True)
    return point


def emit(result: dict, out: str | Path | None) -> None:
    """Print the result as JSON and, when asked, write it to `out` too."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)
