"""Reading a run directory's files back in tests."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def metric_rows(run_dir: Path, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the run's metrics.jsonl, one per epoch; with `keys`, only those keys of each row."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if keys is None:
        return rows
    kept = tuple(keys)
    return [{k: row[k] for k in kept} for row in rows]


def untimed_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of the run's metrics.jsonl without their timings (`*_s`): what two equal runs share exactly."""
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in metric_rows(run_dir)]
