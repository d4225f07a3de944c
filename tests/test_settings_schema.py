"""Every setting is declared once (settings_schema): each field of every settings dataclass has a rule, and the
flags, the --config file check and the range check all follow it. Values in range pass everywhere; values out of
range or of the wrong type, drawn from the rules, are refused everywhere in one line naming the setting."""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzzing import as_text, bounded, out_of_range, valid_values, wrong_types

from qtransfer import cli
from qtransfer.config import SettingsFile, TrainConfig
from qtransfer.config_file import read_config_file
from qtransfer.errors import InputError
from qtransfer.experiments.settings import CompareSettings, CVSettings, ReproduceOptions, ScanSettings, SweepSettings
from qtransfer.settings_schema import (
    NESTED,
    SCHEMA,
    Flag,
    Interval,
    ListOf,
    Option,
    Optional,
    Setting,
    StrOptions,
    check_ranges,
    options,
    setting,
)

# Each settings dataclass, the command whose flags it declares, and an instance with its defaults.
SETTINGS: list[tuple[type, str, Any]] = [
    (TrainConfig, "train", TrainConfig()),
    (CompareSettings, "compare", CompareSettings(TrainConfig())),
    (SweepSettings, "sweep", SweepSettings(TrainConfig())),
    (CVSettings, "cv", CVSettings(TrainConfig())),
    (ScanSettings, "noise-scan", ScanSettings()),
    (ReproduceOptions, "reproduce", ReproduceOptions()),
]
IDS = [command for _, command, _ in SETTINGS]
PARSER = cli.build_parser()
COMMANDS = cli._commands(PARSER)
NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # what argparse reads as a negative number, not a flag
POSITIONALS = {"noise-scan": ["missing-run"], "reproduce": ["not-an-experiment"]}


def _actions(command: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in COMMANDS[command]._actions if a.option_strings}


def test_every_field_of_every_settings_dataclass_declares_a_rule() -> None:
    for cls, _, _ in SETTINGS:
        for f in fields(cls):
            assert f.metadata.get(NESTED) or isinstance(f.metadata.get(SCHEMA), Setting), f"{cls.__name__}.{f.name}"

    @dataclass
    class Undeclared:
        depth: int = field(default=1, metadata=setting("--depth", "layers", Interval(int, 0, None)))
        width: int = 3

    with pytest.raises(TypeError, match=r"Undeclared\.width declares no setting"):
        options(Undeclared)


@pytest.mark.parametrize(("cls", "command", "defaults"), SETTINGS, ids=IDS)
def test_flags_file_keys_and_range_checks_follow_each_declaration(cls: type, command: str, defaults: Any,
                                                                  tmp_path: Path) -> None:
    actions = _actions(command)
    by_key = {o.key: o for o in cli.command_options(command)}
    check_ranges(defaults)  # the defaults are in range
    from_file: dict[str, Any] = {}
    for declared in options(cls):
        s, key = declared.setting, declared.key
        if s.flag is None:
            assert key not in actions and key not in by_key
            continue
        action = actions[key]
        assert by_key[key].setting is s and action.option_strings == [s.flag]
        rule = s.rule.rule if isinstance(s.rule, Optional) else s.rule
        if isinstance(rule, Flag):  # store_true, or store_false for a setting on by default
            assert action.nargs == 0 and action.const is (not declared.default) and action.default is declared.default
        else:
            assert action.type is s.rule.parse and action.help is not None and action.help.startswith(s.help)
            assert action.default == by_key[key].default
            assert by_key[key].default in (declared.default, None)  # None: seeds given by --seeds instead
            assert action.nargs == ("+" if isinstance(rule, ListOf) else "?" if s.const is not None else None)
            assert action.choices == (rule.options if isinstance(rule, StrOptions) else None)
        if declared.default is not None:
            from_file[key] = declared.default
            declared.check(declared.default)
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps(from_file))
    assert read_config_file(path, cli.command_options(command), f"qtransfer {command}") == from_file
    if isinstance(defaults, SettingsFile):  # a flat settings file, keyed as the --config file is
        assert {o.key for o in options(cls)} <= set(json.loads(defaults.to_json()))
        path.write_text(defaults.to_json())
        assert type(defaults).load(path) == defaults


def test_a_setting_is_one_line_naming_its_flag_and_range() -> None:
    cases = [(TrainConfig(n_qubits=0), "n_qubits must be >= 1, got 0 (--qubits)"),
             (TrainConfig(gamma=0.0), "gamma must be in (0, 1], got 0.0 (--gamma)"),
             (TrainConfig(lr=float("nan")), "learning rate must be finite, got nan (--lr)"),
             (TrainConfig(num_workers=-2), "workers must be >= 0 (or -1: from the CPU count), got -2 (--workers)"),
             (CVSettings(TrainConfig(), folds=1), "folds must be >= 2, got 1 (--folds)"),
             (SweepSettings(TrainConfig(), qubits=[2, 0]), "qubits must be >= 1 each, got [2, 0] (--qubit-counts)"),
             (CompareSettings(TrainConfig(), seeds=[]), "no seeds: pass --seeds N (a count) or --seed-list 1 2 3"),
             (ReproduceOptions(epochs=0), "epochs must be >= 1, got 0 (--epochs)")]
    for settings, message in cases:
        with pytest.raises(InputError) as err:
            check_ranges(settings)
        assert str(err.value) == message
    assert Interval(int, 1, 50).describe() == "1..50"
    assert Interval(float, 0, 1, closed="left").describe() == "[0, 1)"
    assert Interval(int, 0, None, special={-1: "automatic"}).describe() == ">= 0 (or -1: automatic)"
    check_ranges(ReproduceOptions(epochs=None, seeds=None))  # None: the experiment's own


# ---------------------------------------------------------------- fuzzed from the rules

DECLARED = [(cls, command, defaults, o) for cls, command, defaults in SETTINGS for o in options(cls)
            if o.setting.flag is not None]
REFUSING = [(cls, command, defaults, o) for cls, command, defaults, o in DECLARED
            if out_of_range(o.setting.rule) is not None]


@st.composite
def _refused(draw: st.DrawFn) -> tuple[type, str, Any, Option, Any]:
    cls, command, defaults, declared = draw(st.sampled_from(REFUSING))
    bad = out_of_range(declared.setting.rule)
    assert bad is not None
    return cls, command, defaults, declared, draw(bad)


@bounded(60)
@given(case=_refused())
def test_values_out_of_range_are_refused_by_the_settings_and_the_command_line(
    case: tuple[type, str, Any, Option, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _, command, defaults, declared, value = case
    capsys.readouterr()  # what an earlier example printed
    with pytest.raises(InputError) as err:
        check_ranges(replace(defaults, **{declared.name: value}))
    message = str(err.value)
    assert "\n" not in message
    if not message.startswith("no seeds"):
        assert f"{declared.label} must" in message and f"({declared.setting.flag})" in message
    flag = declared.setting.flag
    assert flag is not None
    if isinstance(value, list):
        typed = [flag, *map(as_text, value)]
        if not value or any(t.startswith("-") and not NUMBER.match(t) for t in typed[1:]):
            return  # not typeable after a flag: none, or read as a flag
    else:
        typed = [f"{flag}={as_text(value)}"]
    argv = ["--quiet", command, *POSITIONALS.get(command, []), *typed]
    if isinstance(declared.setting.rule, StrOptions):  # argparse refuses a choice it does not know: a usage error
        with pytest.raises(SystemExit, match="2"):
            cli.main(argv)
        return
    assert cli.main(argv) == 1, capsys.readouterr().err
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and f"{declared.label} must" in err_text and flag in err_text, err_text


@bounded(60)
@given(data=st.data())
def test_values_in_range_pass_and_wrong_types_in_a_file_are_refused_naming_the_key(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, command, defaults, declared = data.draw(st.sampled_from(DECLARED))
    good = data.draw(valid_values(declared.setting.rule))
    declared.check(good)
    check_ranges(replace(defaults, **{declared.name: good}))
    if command == "reproduce":
        return  # no --config file
    path = tmp_path_factory.mktemp("schema") / "s.json"
    wrong = data.draw(wrong_types(declared.setting.rule))
    path.write_text(json.dumps({declared.key: wrong}))
    with pytest.raises(InputError, match=re.escape(f"key '{declared.key}' in {path} must be ")):
        read_config_file(path, cli.command_options(command), f"qtransfer {command}")
    if good is not None:
        path.write_text(json.dumps({declared.key: good}))
        value = read_config_file(path, cli.command_options(command), f"qtransfer {command}")[declared.key]
        assert value == (Path(good) if isinstance(value, Path) else good)
