"""A `--config` file (TOML or JSON): its keys are a command's declared settings (settings_schema), its values checked
and converted by their rules as the flags' own would be, so that they can stand in for the flags' defaults."""
from __future__ import annotations

import json
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from qtransfer.errors import InputError, MissingFileError
from qtransfer.registry import closest
from qtransfer.settings_schema import Option, WrongType

FORMATS = (".toml", ".json")


def read_config_file(
    path: Path, options: Sequence[Option], prog: str, positionals: Sequence[str] = (),
    others: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """The file's settings, keyed and converted as the command's flags store them, to stand in for their defaults:
    `options` are the command's declared settings (`prog` names it), `positionals` its command-line arguments, and
    `others` maps other commands to their keys, to say where a stray key belongs."""
    path = Path(path)
    settable = {o.key: o for o in options if o.setting.flag is not None}
    values = load(path)
    for key in values:
        if key not in settable:
            raise _unknown(key, path, prog, settable, positionals, others or {})
    return {key: convert(value, settable[key], path) for key, value in values.items()}


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


def convert(value: Any, option: Option, path: Path) -> Any:
    """`value` as the option's flag would store it, or an InputError naming the key, the file and what fits."""
    if value is None and option.default is None:
        return None
    try:
        return option.setting.rule.convert(value)
    except WrongType as wanted:
        raise InputError(f"key {option.key!r} in {path} must be {wanted}, got {_show(value)}") from None


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _unknown(key: str, path: Path, prog: str, settable: Mapping[str, Option], positionals: Sequence[str],
             others: Mapping[str, Collection[str]]) -> InputError:
    if key in positionals:
        return InputError(f"key {key!r} in {path} is an argument of the command line, not a setting: "
                          f"{prog} {key.upper()} --config {path}")
    takers = [other for other, keys in others.items() if key in keys]
    where = f" is not a setting of `{prog}` (`{'`, `'.join(takers)}` takes it)" if takers else ""
    guess = closest(key, settable)
    hint = f"; did you mean {guess!r}?" if guess else ""
    return InputError(f"{'key' if where else 'unknown key'} {key!r} in {path}{where}{hint} "
                      f"(known: {', '.join(sorted(settable))})")
