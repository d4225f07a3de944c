"""Fuzzing the command line: random flags and values of every subcommand, read from the real parser, and random
--config files. Whatever they are, the exit code is 0, 1 or 2 and no traceback is printed. No example does real
work: every data folder is missing, empty or has no images, and the network is off."""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from support.fuzzing import (
    FLOATS,
    HOSTILE_TEXT,
    INTS,
    TOML_SAFE,
    as_text,
    bounded,
    disable_network,
    out_of_range,
    valid_values,
    wrong_types,
)

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.formats import RUN_MARKER
from qtransfer.settings_schema import FilePath, Interval, ListOf, Optional

PARSER = cli.build_parser()
COMMANDS = cli._commands(PARSER)
# reproduce runs a paper experiment whatever its --data (spirals needs none): only names it does not know
REAL_WORK = {"reproduce": {"spirals", "ants-bees", "circuit-sweep", "cifar", "qc", "qq", "baselines"},
             "data": {"digits"}}
COUNTER = itertools.count()
# Each command's declared settings by key: their rules say which values to try, in range and out of it.
OPTIONS = {command: {o.key: o for o in cli.command_options(command)} for command in COMMANDS}


class Places:
    """The files and folders examples point at: none of them holds a dataset that could be trained on."""

    def __init__(self, root: Path):
        self.root = root
        self.missing = root / "missing"
        self.empty = root / "empty"
        self.empty.mkdir()
        self.text = root / "notes.txt"
        self.text.write_text("not a dataset")
        self.no_images = root / "no-images"  # the layout, with no image in any class
        for split, cls in itertools.product(("train", "val"), ("ants", "bees")):
            (self.no_images / split / cls).mkdir(parents=True)
        self.one_class = root / "one-class"
        for split in ("train", "val"):
            (self.one_class / split / "ants").mkdir(parents=True)
            Image.new("RGB", (8, 8), (9, 99, 199)).save(self.one_class / split / "ants" / "a.png")
        self.image = self.one_class / "train" / "ants" / "a.png"
        self.garbage = root / "garbage.jpg"
        self.garbage.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        self.cache = root / "cache"

    def fresh(self, name: str = "new") -> Path:
        return self.root / f"{name}-{next(COUNTER)}"

    def paths(self) -> st.SearchStrategy[str]:
        fixed = [self.missing, self.empty, self.text, self.no_images, self.one_class, self.image, self.garbage,
                 self.root / "missing" / "deeper", self.text / "below-a-file"]
        return st.one_of(st.sampled_from([str(p) for p in fixed]), HOSTILE_TEXT)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Places:
    return Places(tmp_path_factory.mktemp("fuzz-cli"))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, places: Places) -> None:
    disable_network(monkeypatch)
    monkeypatch.chdir(places.root)  # relative paths of hostile text land here
    monkeypatch.setenv("QTRANSFER_CACHE", str(places.cache))


# Names the registries know, next to near misses: a valid name gets an example further, to the next check.
NAMES = {
    "backbone": ["efficientnet_lite0", "resnet18", "resnet_18", "timm:resnet18", "timm:no_such_model", "timm:"],
    "head": ["quantum", "classical", "linear", "logreg", "svm", "qkernel", "quantom"],
    "heads": ["quantum", "classical", "linear", "svm:pca=2", "quantum:depth=2,qubits=3", "quantum:depth=x",
              "quantum:nope=1", "classical:", ":", "svm:pca=-1"],
    "template": ["tutorial", "strongly_entangling", "ring_cz", "tutorail"],
    "backend": ["torch", "pennylane:default.qubit", "pennylane:qiskit.remote", "pennylane:no.such.device",
                "pennylane:", "qiskit", "torch:gpu"],
    "device": ["auto", "cpu", "cuda", "cuda:1", "meta", "mps", "cpu:0", "tpu"],
    "weights": ["default", "none", "missing.pth"],
    "noise": ["depolarizing=0.01", "readout=0.5", "depolarizing=2", "depolarizing=-1", "bogus=0.1",
              "depolarizing=nan", "amplitude_damping=0.02@CNOT", "depolarizing=0.1@NOPE", "=", ",", "readout"],
    "device_options": ['{"shots": 10}', '{"noise_model": "FakeManilaV2"}', "[1, 2]", "{", '"text"', "null",
                       '{"backend": "ibm_x"}', '{"shots": "many"}'],
    "channel": ["depolarizing", "bit_flip", "amplitude_damping", "readout", "none"],
    "metrics": ["accuracy", "balanced_accuracy", "roc_auc", "f1", "confusion", "recall", "nope"],
    "split": ["val", "train", "test", "validation", "nope"],
    "name": ["hymenoptera", "nope", "mnist"],
}


def _refused(rule: object) -> st.SearchStrategy[object]:
    bad = out_of_range(rule)
    return bad if bad is not None else st.nothing()


PATHS = ("data", "cache_dir", "holdout_list", "url", "report")


def _rule(command: str, dest: str) -> object:
    """The declared rule of a command's setting, of one item for a list, without Optional; None if undeclared."""
    declared = OPTIONS[command].get(dest)
    rule = declared.setting.rule if declared else None
    rule = rule.rule if isinstance(rule, Optional) else rule
    return rule.item if isinstance(rule, ListOf) else rule


def _value(action: argparse.Action, places: Places, command: str) -> st.SearchStrategy[str]:
    """One value of a flag or argument: from its declared rule (in range or out of it), by its type, from the
    known names, or hostile text."""
    kind, rule = action.type, _rule(command, action.dest)
    if isinstance(rule, Interval):
        typed = st.one_of(valid_values(rule), _refused(rule)).map(as_text)
    elif kind is int:
        typed = INTS.map(as_text)
    elif kind is float:
        typed = FLOATS.map(as_text)
    elif action.dest in ("dest", "out"):  # folders a command may make: new ones, so that "missing" stays missing
        return st.builds(lambda: str(places.fresh(action.dest)))
    elif kind is Path or isinstance(rule, FilePath) or action.dest in PATHS:
        typed = places.paths()
    else:
        typed = st.sampled_from(NAMES.get(action.dest, ["x"]))
    return st.one_of(typed, typed, HOSTILE_TEXT)


def _values(action: argparse.Action, places: Places, command: str) -> st.SearchStrategy[list[str]]:
    if action.nargs == 0:
        return st.just([])
    if action.nargs in ("+", "*"):
        return st.lists(_value(action, places, command), min_size=1, max_size=3)
    return _value(action, places, command).map(lambda v: [v])


def _options(command: str) -> list[argparse.Action]:
    return [a for a in COMMANDS[command]._actions
            if a.option_strings and a.dest not in ("help", "config_file", "resume")]


@st.composite
def _fake_run_dir(draw: st.DrawFn, places: Places) -> str:
    """A folder that looks more or less like a run directory: config.json, best.pt, last.pt, marker, each maybe
    missing, damaged or foreign."""
    run = places.fresh("run")
    run.mkdir()
    settings = json.loads(TrainConfig(data=str(places.no_images)).to_json())
    config = draw(st.one_of(
        st.just(settings),
        st.fixed_dictionaries({}, optional={k: st.one_of(st.integers(), st.text(max_size=5), st.none(),
                                                          st.floats(), st.just(v)) for k, v in settings.items()}),
        st.sampled_from([[], "text", None, {"unknown": 1}]),
    ))
    if draw(st.booleans()):
        (run / "config.json").write_text(draw(st.sampled_from([json.dumps(config), "{not json", "", "\xff"])))
    for name in ("best.pt", "last.pt"):
        kind = draw(st.sampled_from(["none", "garbage", "dict", "empty"]))
        if kind == "garbage":
            (run / name).write_bytes(draw(st.binary(max_size=64)))
        elif kind == "dict":
            torch.save({"head": {"w": torch.zeros(2)}, "classes": ["ants", "bees"], "config": settings,
                        "format": draw(st.sampled_from([1, 2, "x"]))}, run / name)
        elif kind == "empty":
            (run / name).touch()
    if draw(st.booleans()):
        (run / RUN_MARKER).write_text(draw(st.sampled_from(['{"format": 1}', '{"format": 9}', "[]", "{", ""])))
    return str(run)


@st.composite
def command_lines(draw: st.DrawFn, places: Places) -> list[str]:
    """A command line of a random subcommand: its positionals, then a random subset of its flags."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    argv = ["--quiet", command]
    for action in COMMANDS[command]._actions:
        if action.option_strings:
            continue
        if action.dest == "run_dir":
            argv.append(draw(st.one_of(_fake_run_dir(places), places.paths())))
        elif action.dest in ("name",):
            name = draw(st.one_of(st.sampled_from(NAMES["name"]), HOSTILE_TEXT))
            argv.append(name if name not in REAL_WORK.get(command, ()) else "not-" + name)
        else:
            argv += draw(_values(action, places, command))
    options = _options(command)
    for action in draw(st.lists(st.sampled_from(options), max_size=6, unique_by=lambda a: a.dest)) if options else ():
        argv += [draw(st.sampled_from(action.option_strings)), *draw(_values(action, places, command))]
    if "--data" not in argv and any(a.dest == "data" for a in options) and command in ("train", "extract", "compare",
                                                                                         "sweep", "cv"):
        argv += ["--data", draw(st.sampled_from([str(places.missing), str(places.no_images), str(places.empty)]))]
    if command in ("train", "compare", "sweep") and draw(st.booleans()):
        argv += ["--resume", draw(st.one_of(_fake_run_dir(places), places.paths()))]
    return argv


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of `qtransfer ARGV` run in this process (argparse's own exits included)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    return code, capsys.readouterr().err


def assert_no_crash(argv: list[str], code: int, err: str) -> None:
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and "this is a bug" not in err, (argv, err)
    if code == 1:  # a user error is one line, headed by the command (the user's own text may hold a line break)
        assert err.startswith(f"qtransfer {argv[1]}") and err.endswith("\n"), (argv, err)


@pytest.mark.slow
@pytest.mark.timeout(300)
@bounded(40)
@given(data=st.data())
def test_random_command_lines_exit_0_1_or_2_without_a_traceback(
    data: st.DataObject, places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = data.draw(command_lines(places))
    code, err = run_cli(argv, capsys)
    assert_no_crash(argv, code, err)


# ---------------------------------------------------------------- --config files

FILE_COMMANDS = sorted(c for c, p in COMMANDS.items() if any(a.dest == "config_file" for a in p._actions))


def _toml(values: dict) -> str:
    def one(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") \
                else repr(value)
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, list):
            return "[" + ", ".join(one(v) for v in value) + "]"
        return str(value)

    return "".join(f"{json.dumps(k)} = {one(v)}\n" for k, v in values.items())


@st.composite
def config_files(draw: st.DrawFn, places: Places) -> tuple[str, list[str]]:
    """A command with --config FILE: random keys (its settings, other commands', unknown) and values."""
    command = draw(st.sampled_from(FILE_COMMANDS))
    keys = [*sorted(OPTIONS[command]), "heads", "folds", "nope", "config", "run_dir", ""]
    values = {}
    for key in draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)):
        anything = st.one_of(TOML_SAFE, st.sampled_from([str(places.missing), str(places.no_images),
                                                          str(places.empty)]))
        declared = OPTIONS[command].get(key)
        if declared is not None:  # by its rule: allowed, of the wrong type, or out of range
            rule = declared.setting.rule
            anything = st.one_of(anything, valid_values(rule), wrong_types(rule), _refused(rule))
        values[key] = draw(anything)
    values.setdefault("data", str(places.no_images))
    if values["data"] in (str(places.one_class),):
        values["data"] = str(places.missing)
    path = places.fresh("config").with_suffix(draw(st.sampled_from([".toml", ".json", ".yaml", ""])))
    kind = draw(st.sampled_from(["json", "toml", "broken", "binary"]))
    text = {"json": lambda: json.dumps(values), "toml": lambda: _toml(values), "broken": lambda: "data = [1,\n",
            "binary": lambda: "\udcff"}[kind]()
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(text, encoding="utf-8")
    argv = ["--quiet", command]
    if command == "noise-scan":
        argv.append(str(places.empty))
    argv += ["--config", str(path)]
    flags = [a for a in _options(command) if a.dest in ("epochs", "seed", "qubits", "n_qubits", "lr", "heads")]
    for action in draw(st.lists(st.sampled_from(flags), max_size=2, unique_by=lambda a: a.dest)) if flags else ():
        argv += [action.option_strings[0], *draw(_values(action, places, command))]
    return command, argv


@bounded(25)
@given(data=st.data())
def test_random_config_files_exit_0_1_or_2_without_a_traceback(
    data: st.DataObject, places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    _, argv = data.draw(config_files(places))
    code, err = run_cli(argv, capsys)
    assert_no_crash(argv, code, err)


# ---------------------------------------------------------------- what the fuzzers found, kept as plain tests

def _found(places: Places) -> list[tuple[list[str], str]]:
    """Command lines that printed a traceback (or hung) before their fix, and what they say now."""
    run = places.fresh("found-run")
    run.mkdir()
    (run / "last.pt").write_bytes(b"")  # config.json missing
    bad_types = places.fresh("found-run")
    bad_types.mkdir()
    (bad_types / "config.json").write_text(json.dumps({"data": str(places.missing), "n_qubits": "four"}))
    (bad_types / "best.pt").write_bytes(b"")
    huge_circuit = places.fresh("found-run")
    huge_circuit.mkdir()
    settings = {**json.loads(TrainConfig(data=str(places.missing)).to_json()), "n_qubits": 10**30}
    (huge_circuit / "config.json").write_text(json.dumps(settings))
    torch.save({"head": {"w": torch.zeros(2)}, "classes": ["ants", "bees"], "config": settings},
               huge_circuit / "best.pt")
    huge = places.fresh("found-config").with_suffix(".json")
    huge.write_text('{"epochs": ' + "9" * 5000 + "}")
    huge_toml = places.fresh("found-config").with_suffix(".toml")
    huge_toml.write_text("epochs = " + "9" * 5000)
    return [
        (["data", "hymenoptera", "--dest", str(places.fresh("dest")), "--url", str(places.missing)], "it is not a URL"),
        (["cv", "--data", str(places.no_images), "--qubits", str(2**63)], "n_qubits must be <= 50"),
        (["train", "--data", str(places.no_images), "--depth", str(10**30)], "depth must be <= 10000"),
        (["train", "--data", str(places.no_images), "--seed", str(2**63)], "seed must be <= 4294967295"),
        (["compare", "--data", str(places.no_images), "--seed-list", "1", str(2**64)],
         "seeds must be <= 4294967295 each"),
        (["train", "--data", str(places.no_images), "--lr", "inf"], "learning rate must be finite"),
        (["train", "--data", str(places.missing), "--resume", str(run)], "config.json does not exist"),
        (["evaluate", str(bad_types)], "setting 'n_qubits' in"),
        (["evaluate", str(huge_circuit)], "config.json was damaged: n_qubits must be <= 50"),
        (["predict", str(places.fresh("no-run")), str(places.garbage)], "has no config.json"),
        (["train", "--config", str(huge)], "is not valid JSON"),
        (["train", "--config", str(huge_toml)], "is not valid TOML"),
    ]


def test_command_lines_the_fuzzers_found_are_one_line_errors(places: Places, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    for argv, message in _found(places):
        code, err = run_cli(["--quiet", *argv], capsys)
        assert_no_crash(["--quiet", *argv], code, err)
        assert code == 1 and message in err, (argv, err)
