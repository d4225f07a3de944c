"""The settings every head is given and may ignore, so one set of settings can build every head in a comparison."""
from __future__ import annotations

from typing import Any

# TrainConfig.head_options gives each of these to every head.
SHARED_SETTINGS = frozenset({"n_qubits", "depth", "q_delta", "template", "embedding", "backend", "pca", "shots",
                             "noise", "entangle"})


def check_ignored(head: str, kwargs: dict[str, Any]) -> None:
    """Refuse settings that are not shared settings a head may ignore."""
    unknown = set(kwargs) - SHARED_SETTINGS
    if unknown:
        raise TypeError(f"head {head!r} got unknown settings {sorted(unknown)}")
