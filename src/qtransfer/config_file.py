"""A `--config` file (TOML or JSON): its keys are a subcommand's flag destinations, its values checked and converted
as the flags' own would be, so that they can stand in for the flags' defaults."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qtransfer.errors import InputError, MissingFileError
from qtransfer.registry import closest

FORMATS = (".toml", ".json")
KINDS = {int: "an integer", float: "a number", str: "a string", Path: "a path (a string)"}


def read_config_file(
    path: Path, parser: argparse.ArgumentParser, others: Sequence[argparse.ArgumentParser] = ()
) -> dict[str, Any]:
    """The file's settings as defaults for `parser`'s flags; `others` (other commands) say where a stray key belongs."""
    path = Path(path)
    actions = settable(parser)
    values = load(path)
    for key in values:
        if key not in actions:
            raise _unknown(key, path, parser, actions, others)
    return {key: convert(value, actions[key], key, path) for key, value in values.items()}


def load(path: Path) -> dict[str, Any]:
    """The key-value table of a .toml or .json file."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise MissingFileError(f"config file {path} {what}; pass --config FILE with a .toml or .json file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"config file {path}: the name must end in .toml or .json (which says its format), "
                         f"got {suffix or 'no suffix'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"config file {path} is not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"cannot read config file {path}: {err.strerror}") from None
    values = _parse_json(text, path) if suffix == ".json" else _parse_toml(text, path)
    if not isinstance(values, dict):
        raise InputError(f"config file {path} must hold a table of settings (key = value), got {_show(values)}")
    return values


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"config file {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
                         ) from None
    except ValueError as err:  # a number too long to read
        raise InputError(f"config file {path} is not valid JSON: {err}") from None


def _parse_toml(text: str, path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except ValueError as err:  # TOMLDecodeError, or a number too long to read
        raise InputError(f"config file {path} is not valid TOML: {err}") from None


def settable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flags a file may set, by destination: flags storing a value, and on/off flags (their value a boolean)."""
    actions = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "config_file":
            continue
        if type(action) is argparse._StoreAction or _boolean(action):
            actions[action.dest] = action
    return actions


def _boolean(action: argparse.Action) -> bool:
    return isinstance(action, argparse.BooleanOptionalAction) or (
        action.nargs == 0 and isinstance(action.const, bool) and isinstance(action.default, bool))


def convert(value: Any, action: argparse.Action, key: str, path: Path) -> Any:
    """`value` as the flag of `action` would store it, or an InputError naming the key, the file and what fits."""
    if _boolean(action):
        if not isinstance(value, bool):
            raise _wrong(key, path, "true or false", value)
        return value
    if value is None and action.default is None:
        return None
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        count = action.nargs if isinstance(action.nargs, int) else None
        wanted = (f"a list of {count} {_plural(action)}" if count is not None else
                  f"a {'non-empty ' if action.nargs == '+' else ''}list of {_plural(action)}")
        if not isinstance(value, list) or (action.nargs == "+" and not value) or (count is not None and len(value) != count):
            raise _wrong(key, path, wanted, value)
        return [_one(v, action, key, path) for v in value]
    return _one(value, action, key, path)


def _one(value: Any, action: argparse.Action, key: str, path: Path) -> Any:
    kind = action.type or str
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        converted: Any = value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        converted = float(value)
    elif kind not in (int, float) and isinstance(value, str):
        try:
            converted = kind(value)  # type: ignore[operator]
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise _wrong(key, path, _kind(action), value) from None
    else:
        raise _wrong(key, path, _kind(action), value)
    if action.choices is not None and converted not in action.choices:
        raise _wrong(key, path, "one of " + ", ".join(map(str, action.choices)), value)
    return converted


def _kind(action: argparse.Action) -> str:
    kind = action.type or str
    return KINDS.get(kind, f"a string that {getattr(kind, '__name__', kind)} accepts")  # type: ignore[call-overload]


def _plural(action: argparse.Action) -> str:
    return {int: "integers", float: "numbers", Path: "paths"}.get(action.type, "strings")  # type: ignore[call-overload]


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _wrong(key: str, path: Path, wanted: str, value: Any) -> InputError:
    return InputError(f"key {key!r} in {path} must be {wanted}, got {_show(value)}")


def _unknown(key: str, path: Path, parser: argparse.ArgumentParser, actions: Mapping[str, argparse.Action],
             others: Sequence[argparse.ArgumentParser]) -> InputError:
    positional = [a.dest for a in parser._actions if not a.option_strings]
    if key in positional:
        return InputError(f"key {key!r} in {path} is an argument of the command line, not a setting: "
                          f"{parser.prog} {key.upper()} --config {path}")
    takers = [other.prog for other in others if key in settable(other)]
    where = f" is not a setting of `{parser.prog}` (`{'`, `'.join(takers)}` takes it)" if takers else ""
    guess = closest(key, actions)
    hint = f"; did you mean {guess!r}?" if guess else ""
    return InputError(f"{'key' if where else 'unknown key'} {key!r} in {path}{where}{hint} "
                      f"(known: {', '.join(sorted(actions))})")
