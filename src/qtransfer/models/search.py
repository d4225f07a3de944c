"""Each head's declared search space (`SEARCH` on its class): the hyper-parameters tuning chooses among, the same
number of configurations for every head, so that no head is tuned harder than another."""
from __future__ import annotations

import itertools
from typing import Any

from qtransfer.models.heads import HEADS

SEARCH_SIZE = 8  # configurations every head's space holds


def search_space(head: str) -> dict[str, tuple[Any, ...]]:
    """The named head's search space: setting or hyper-parameter -> the values tried."""
    return dict(getattr(HEADS.lookup(head), "SEARCH", {}))


def points(space: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Every configuration of a search space, in a fixed order (the product of its values, last key fastest)."""
    return [dict(zip(space, values)) for values in itertools.product(*space.values())]


def label(point: dict[str, Any]) -> str:
    """A configuration as 'key=value,key=value' (as in a head spec)."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
