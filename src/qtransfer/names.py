"""Errors for names that are not in a registry, with the closest known name suggested."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like `name`: a close spelling, else the one name it begins or is part of."""
    known = list(known)
    match = difflib.get_close_matches(name, known, n=1)
    if match:
        return match[0]
    containing = [k for k in known if name and name.lower() in k.lower()]
    return containing[0] if len(containing) == 1 else None


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "") -> ValueError:
    """ValueError: unknown <kind> 'name'[ in where]. Did you mean 'x'? Known: a, b, c."""
    known = sorted(known)
    guess = closest(name, known)
    hint = f" Did you mean {guess!r}?" if guess else ""
    return ValueError(f"unknown {kind} {name!r}{' in ' + where if where else ''}.{hint} Known: {', '.join(known)}")
