"""Things looked up by name (backbones, heads, templates, experiments, datasets); an unknown name gets the
closest known one suggested."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import TypeVar

from qtransfer.errors import InputError

T = TypeVar("T")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like `name`: a close spelling, else the one name it begins or is part of."""
    known = list(known)
    match = difflib.get_close_matches(name, known, n=1)
    if match:
        return match[0]
    containing = [k for k in known if name and name.lower() in k.lower()]
    return containing[0] if len(containing) == 1 else None


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "") -> InputError:
    """InputError: unknown <kind> 'name'[ in where]. Did you mean 'x'? Known: a, b, c."""
    known = sorted(known)
    guess = closest(name, known)
    hint = f" Did you mean {guess!r}?" if guess else ""
    return InputError(f"unknown {kind} {name!r}{' in ' + where if where else ''}.{hint} Known: {', '.join(known)}")


class Registry(dict[str, T]):
    """A dict of named entries of one kind, filled by `register`; `lookup` names the closest known entry."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: store the decorated object under `name`."""

        def deco(obj: T) -> T:
            self[name] = obj
            return obj

        return deco

    def lookup(self, name: str, where: str = "") -> T:
        """The entry called `name`, or an InputError suggesting the closest known name."""
        if name not in self:
            raise unknown_name(self.kind, name, self, where)
        return self[name]
