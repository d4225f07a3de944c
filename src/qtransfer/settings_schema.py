"""Each setting declared once, as its dataclass field's metadata: flag, help and rule (type, range, choices, the
values with a special meaning). Command-line flags, `--config` key checks, range checks with their messages, the
flat settings files and the fuzzers' invalid values are all read from these declarations."""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from qtransfer.errors import InputError

SCHEMA = "qtransfer.setting"  # the metadata key holding a field's Setting
NESTED = "qtransfer.nested"  # the metadata key of a field holding another settings dataclass (an experiment's config)


class WrongType(ValueError):
    """A value of the wrong type for its rule (its message: what the rule takes)."""


class Rule:
    """What a setting's values may be: a type with its range or choices."""

    @property
    def kind(self) -> str:
        """What it takes, as the end of "must be ..."."""
        return "a string"

    @property
    def parse(self) -> Callable[[str], Any]:
        """The flag's argparse type."""
        return str

    def convert(self, value: Any) -> Any:
        """A value read from JSON or TOML, converted to the setting's type; WrongType if it is not one."""
        if not isinstance(value, str):
            raise WrongType(self.kind)
        return value

    def requirement(self, value: Any) -> str | None:
        """What a value of the right type fails ("<= 50", "in (0, 1]"), or None when it is allowed."""
        return None

    def message(self, label: str, value: Any) -> str | None:
        """The one-line refusal of `value`, or None when it is allowed."""
        unmet = self.requirement(value)
        return None if unmet is None else f"{label} must be {unmet}, got {_shown(value)}"


@dataclass(frozen=True)
class Interval(Rule):
    """A number in a range: `closed` says which ends belong ("both", "left", "right", "neither"); None is unbounded
    (a float must still be finite). `special` values lie outside the range or mark a meaning inside it."""

    type: type[int] | type[float]
    low: float | None
    high: float | None
    closed: str = "both"
    special: Mapping[int | float, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be both, left, right or neither, got {self.closed!r}")

    @property
    def kind(self) -> str:
        return "an integer" if self.type is int else "a number"

    @property
    def parse(self) -> Callable[[str], Any]:
        return self.type

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WrongType(self.kind)
        if self.type is int:
            if not isinstance(value, int):
                raise WrongType(self.kind)
            return value
        if isinstance(value, int) and abs(value) > 2**1000:  # too big for a float: refused
            raise WrongType(self.kind)
        return float(value)

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the range (special values aside)."""
        return self.low_ok(value) and self.high_ok(value)

    def low_ok(self, value: float) -> bool:
        """Whether `value` is on the right side of the lower end."""
        if self.low is None:
            return True
        return value >= self.low if self.closed in ("both", "left") else value > self.low

    def high_ok(self, value: float) -> bool:
        """Whether `value` is on the right side of the upper end."""
        if self.high is None:
            return True
        return value <= self.high if self.closed in ("both", "right") else value < self.high

    def requirement(self, value: Any) -> str | None:
        if value in self.special and not isinstance(value, bool):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "finite" + self._specials()
        if self.contains(value):
            return None
        if self.type is float and self.low is not None and self.high is not None:
            return f"in {self._bracketed()}{self._specials()}"
        return (self._lower() if not self.low_ok(value) else self._upper()) + self._specials()

    def describe(self) -> str:
        """The whole range, as help and the tests show it: '1..50', '(0, 1]', '>= 0 (0: automatic)'."""
        if self.low is not None and self.high is not None:
            both = f"{self.low}..{self.high}" if self.type is int else self._bracketed()
            return both + self._specials()
        if self.low is not None:
            return self._lower() + self._specials()
        if self.high is not None:
            return self._upper() + self._specials()
        return "any" + self._specials()

    def _lower(self) -> str:
        return f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low}"

    def _upper(self) -> str:
        return f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high}"

    def _bracketed(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{left}{self.low}, {self.high}{right}"

    def _specials(self) -> str:
        if not self.special:
            return ""
        outside = all(not self.contains(v) for v in self.special)
        return f" ({'or ' if outside else ''}{', '.join(f'{v}: {m}' for v, m in self.special.items())})"


@dataclass(frozen=True)
class Flag(Rule):
    """On or off: a flag without a value (store_true, or store_false when the setting is on by default)."""

    @property
    def kind(self) -> str:
        return "true or false"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise WrongType(self.kind)
        return value


@dataclass(frozen=True)
class Text(Rule):
    """Any string (names are checked later by their registries, which suggest the closest)."""


@dataclass(frozen=True)
class FilePath(Rule):
    """A file or folder, given as a string."""

    @property
    def kind(self) -> str:
        return "a path (a string)"

    @property
    def parse(self) -> Callable[[str], Any]:
        return Path

    def convert(self, value: Any) -> Any:
        return Path(super().convert(value))


@dataclass(frozen=True)
class StrOptions(Rule):
    """One of a few fixed strings."""

    options: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "one of " + ", ".join(self.options)

    def convert(self, value: Any) -> Any:
        if value not in self.options:
            raise WrongType(self.kind)
        return value

    def requirement(self, value: Any) -> str | None:
        return None if value in self.options else self.kind


@dataclass(frozen=True)
class ListOf(Rule):
    """A list of values of one rule; `min_size` 1 unless it may be empty, `empty` the refusal of too few."""

    item: Rule
    min_size: int = 1
    empty: str = ""

    @property
    def kind(self) -> str:
        plural = {"an integer": "integers", "a number": "numbers", "a path (a string)": "paths"}
        return f"a {'non-empty ' if self.min_size else ''}list of {plural.get(self.item.kind, 'strings')}"

    @property
    def parse(self) -> Callable[[str], Any]:
        return self.item.parse

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list) or len(value) < self.min_size:
            raise WrongType(self.kind)
        try:
            return [self.item.convert(v) for v in value]
        except WrongType:
            raise WrongType(self.kind) from None

    def message(self, label: str, value: Any) -> str | None:
        if len(value) < self.min_size:
            return self.empty or f"{label} must be {self.kind}, got {_shown(value)}"
        for item in value:
            unmet = self.item.requirement(item)
            if unmet is not None:
                return f"{label} must be {unmet} each, got {_shown(value)}"
        return None


@dataclass(frozen=True)
class Optional(Rule):
    """A value of `rule`, or None: the default decided elsewhere (an experiment's own)."""

    rule: Rule

    @property
    def kind(self) -> str:
        return self.rule.kind

    @property
    def parse(self) -> Callable[[str], Any]:
        return self.rule.parse

    def convert(self, value: Any) -> Any:
        return None if value is None else self.rule.convert(value)

    def message(self, label: str, value: Any) -> str | None:
        return None if value is None else self.rule.message(label, value)


@dataclass(frozen=True)
class Setting:
    """One setting: its flag (None: not on the command line), help, rule, and where its name differs from the
    field's: `key` (its --config key, settings-file key and argparse destination) and `label` (in messages).
    `const`: the value of the flag given without one (--mlflow alone)."""

    flag: str | None
    help: str
    rule: Rule
    key: str = ""
    label: str = ""
    const: Any = None
    metavar: str | None = None


def setting(flag: str | None, help: str, rule: Rule, **extra: Any) -> dict[str, Setting]:
    """A field's metadata declaring it: `field(default=4, metadata=setting("--qubits", "qubits", Interval(...)))`."""
    return {SCHEMA: Setting(flag, help, rule, **extra)}


def nested() -> dict[str, bool]:
    """The metadata of a field holding another settings dataclass, whose settings are the command's too."""
    return {NESTED: True}


REQUIRED = object()  # the default of a setting without one


@dataclass(frozen=True)
class Option:
    """A declared setting of one command: the field (or command-line-only setting) it is, and its default."""

    name: str
    setting: Setting
    default: Any = REQUIRED

    @property
    def key(self) -> str:
        """Its --config key and argparse destination."""
        return self.setting.key or self.name

    @property
    def label(self) -> str:
        """Its name in messages."""
        return self.setting.label or self.name

    def check(self, value: Any) -> None:
        """Refuse a value outside the rule's range, in one line naming the setting, its flag and what it takes."""
        if value is None and self.default is None:  # left to be decided elsewhere
            return
        message = self.setting.rule.message(self.label, value)
        if message is not None:
            flag = self.setting.flag
            raise InputError(message + (f" ({flag})" if flag and flag not in message else ""))


def options(cls: type, exclude: Sequence[str] = ()) -> list[Option]:
    """The declared settings of a settings dataclass, in field order (a nested dataclass's field is left out)."""
    found = []
    for f in fields(cls):
        if f.metadata.get(NESTED) or f.name in exclude:
            continue
        declared = f.metadata.get(SCHEMA)
        if not isinstance(declared, Setting):
            raise TypeError(f"{cls.__name__}.{f.name} declares no setting: add metadata=setting(flag, help, rule)")
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else REQUIRED)
        found.append(Option(f.name, declared, default))
    return found


def option(cls: type, name: str) -> Option:
    """The declared setting `name` of a settings dataclass."""
    (found,) = [o for o in options(cls) if o.name == name]
    return found


def inherited(cls: type, name: str) -> Any:
    """A field declared as `cls`'s field `name` is, with the same default (for settings several commands share)."""
    declared = option(cls, name)
    return field(default=declared.default, metadata={SCHEMA: declared.setting})


def check_ranges(settings: Any) -> None:
    """Refuse the first declared setting of `settings` (a settings dataclass) whose value lies outside its rule."""
    for declared in options(type(settings)):
        declared.check(getattr(settings, declared.name))


def keys(cls: type) -> dict[str, str]:
    """field name -> key, where a settings dataclass's setting is keyed by another name than its field's."""
    return {o.name: o.key for o in options(cls) if o.key != o.name}


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)
