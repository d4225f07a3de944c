"""`--config FILE`: a run's config.json reruns it bit for bit, TOML and JSON files set any command's settings, flags
override them, and a bad file is one line naming the key and the file, with nothing created."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from support.runs import untimed_rows

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.config_file import read_config_file
from qtransfer.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _only_run(out: Path) -> Path:
    (run_dir,) = list(out.iterdir())
    return run_dir


def test_a_runs_config_json_reruns_it_bit_for_bit(hymenoptera: Path, shared_cache: Path, tmp_path: Path) -> None:
    import torch

    # settings away from the defaults, so that a rerun ignoring the file would differ
    first = ["--quiet", "train", "--data", str(hymenoptera), "--cache-dir", str(shared_cache), "--workers", "0",
             "--epochs", "2", "--depth", "2", "--qubits", "3", "--lr", "0.003", "--batch-size", "8", "--seed", "7",
             "--step-size", "1", "--gamma", "0.5", "--out", str(tmp_path / "a")]
    assert cli.main(first) == 0
    original = _only_run(tmp_path / "a")
    assert cli.main(["--quiet", "train", "--config", str(original / "config.json"), "--out", str(tmp_path / "b")]) == 0
    rerun = _only_run(tmp_path / "b")

    config = json.loads((rerun / "config.json").read_text())
    assert config == {**json.loads((original / "config.json").read_text()), "out": str(tmp_path / "b")}
    assert config["lr"] == 0.003 and config["n_qubits"] == 3 and config["batch_size"] == 8
    rows = untimed_rows(rerun)
    assert len(rows) == 2 and rows == untimed_rows(original)
    heads = [torch.load(run / "best.pt", weights_only=True)["head"] for run in (original, rerun)]
    assert heads[0].keys() == heads[1].keys()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_every_training_setting_is_a_key_of_train_files() -> None:
    keys = {o.key for o in cli.command_options("train")}
    assert {f.name for f in fields(TrainConfig)} <= keys
    assert "config_file" not in keys and "help" not in keys


def test_compare_takes_a_toml_file_and_its_flags_override_the_file(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path
) -> None:
    settings = tmp_path / "compare.toml"
    settings.write_text(f"""# two linear heads' seeds
data = {json.dumps(str(hymenoptera))}
cache_dir = {json.dumps(str(shared_cache))}
out = {json.dumps(str(tmp_path / "runs"))}
num_workers = 0
heads = ["linear"]
seed_list = [3, 4]
epochs = 3
batch_size = 16
lr = 1  # an integer where a number is asked: taken as 1.0
""")
    assert cli.main(["--quiet", "compare", "--config", str(settings), "--epochs", "1"]) == 0
    saved = json.loads((_only_run(tmp_path / "runs") / "compare_config.json").read_text())
    assert saved["heads"] == ["linear"] and saved["seed_list"] == [3, 4]
    assert saved["epochs"] == 1 and saved["batch_size"] == 16 and saved["lr"] == 1.0
    assert "head" not in saved  # compare's heads come from `heads`, not the config


def test_json_files_set_cv_and_sweep_settings_and_flags_win(tmp_path: Path) -> None:
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"heads": ["linear", "logreg"], "folds": 3, "keep_val": True, "inner_fraction": 0.25,
                              "metrics": ["accuracy"], "n_qubits": 6, "no_cache": True}))
    args = cli.parse_args(["cv", "--config", str(cv), "--folds", "4"])
    assert (args.heads, args.folds, args.keep_val, args.inner_fraction) == (["linear", "logreg"], 4, True, 0.25)
    assert (args.metrics, args.n_qubits, args.no_cache) == (["accuracy"], 6, True)

    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"depths": [0, 2], "qubit_counts": [2, 3], "no_classical": True, "seeds": 2}))
    args = cli.parse_args(["sweep", "--config", str(sweep), "--qubit-counts", "5"])
    assert (args.depths, args.qubit_counts, args.no_classical, args.seeds) == ([0, 2], [5], True, 2)
    assert cli.parse_args(["sweep"]).depths == list(range(11))  # a file's settings stay with its own command line


BAD = [  # command, file name, contents, what the one line must say
    ("train", "s.toml", 'epochs = "3"', ["key 'epochs'", "must be an integer", '"3"']),
    ("train", "s.toml", "lr = true", ["key 'lr'", "must be a number", "true"]),
    ("train", "s.json", '{"no_cache": 1}', ["key 'no_cache'", "must be true or false"]),
    ("compare", "s.toml", "seed_list = 3", ["key 'seed_list'", "must be a non-empty list of integers"]),
    ("compare", "s.toml", "heads = []", ["key 'heads'", "must be a non-empty list of strings"]),
    ("train", "s.toml", "epoch = 3", ["unknown key 'epoch'", "did you mean 'epochs'?", "known: backbone,"]),
    ("compare", "s.toml", 'head = "linear"', ["key 'head'", "not a setting of `qtransfer compare`",
                                              "`qtransfer train` takes it", "did you mean 'heads'?"]),
    ("noise-scan", "s.toml", 'run_dir = "runs/x"', ["key 'run_dir'", "argument of the command line"]),
    ("train", "s.toml", "epochs = 0", ["s.toml: epochs must be >= 1, got 0"]),
    ("train", "s.toml", "gamma = 1.5", ["s.toml: gamma must be in (0, 1], got 1.5"]),
    ("cv", "s.toml", "folds = 1", ["s.toml: folds must be >= 2, got 1 (--folds)"]),
    ("noise-scan", "s.toml", "strengths = [0.1, 2]",
     ["s.toml: strengths must be in [0, 1] each, got [0.1, 2.0] (--strengths)"]),
    ("train", "s.toml", "epochs = \n", ["s.toml is not valid TOML", "line 2, column 10"]),
    ("train", "s.json", '{"epochs": 3,\n "lr": }', ["s.json is not valid JSON", "line 2, column 8"]),
    ("train", "s.json", "[1, 2]", ["s.json must hold a table of settings", "[1, 2]"]),
    ("train", "s.yaml", "epochs: 3", ["s.yaml", "must end in .toml or .json", "'.yaml'"]),
    ("train", "missing.toml", None, ["missing.toml does not exist"]),
]


@pytest.mark.parametrize(("command", "name", "text", "says"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_a_bad_file_is_one_line_naming_key_and_file_and_nothing_is_created(
    command: str, name: str, text: str | None, says: list[str], hymenoptera: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTRANSFER_CACHE", str(tmp_path / "cache"))
    path = tmp_path / name
    if text is not None:
        data = f"data = {json.dumps(str(hymenoptera))}\n" if name.endswith(".toml") and command != "noise-scan" else ""
        path.write_text(data + text)
    run = ["runs/x"] if command == "noise-scan" else []
    assert cli.main(["--quiet", command, *run, "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"qtransfer {command}: error: ") and "Traceback" not in err
    assert str(path) in err
    for fragment in says:
        assert fragment in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if text is not None else [])  # no runs/, no cache/


def test_an_error_from_a_flag_says_the_command_line_had_a_part(
    hymenoptera: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.toml"
    path.write_text(f"data = {json.dumps(str(hymenoptera))}\nepochs = 3\n")
    assert cli.main(["train", "--config", str(path), "--epochs", "0", "--lr=0.1"]) == 1
    assert f"{path} (and --epochs, --lr): epochs must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_file_is_a_valid_config(example: Path, hymenoptera: Path) -> None:
    from qtransfer.experiments.compare import parse_head
    from qtransfer.experiments.cv import CVSettings
    from qtransfer.experiments.noise_scan import ScanSettings

    command = example.stem.replace("_", "-")
    values = read_config_file(example, cli.command_options(command), f"qtransfer {command}")
    assert len(values) >= 3, "an example sets a few settings"
    run = ["runs/x"] if command == "noise-scan" else []
    args = cli.parse_args([command, *run, "--config", str(example), "--data", str(hymenoptera)])
    assert all(getattr(args, key) == value for key, value in values.items() if key != "data")
    if command == "noise-scan":
        ScanSettings(args.channel, args.strengths, args.shots_list, args.repeats, args.readout).check()
        return
    config = cli._config(args).validate()
    if command == "cv":
        CVSettings(config, args.heads, args.folds, args.keep_val, args.inner_fraction, args.metrics).check()
    for head in getattr(args, "heads", None) or []:
        parse_head(head).config(config).validate()


def test_settings_declared_later_are_keys_with_their_own_types_and_choices(tmp_path: Path) -> None:
    from dataclasses import dataclass, field

    from qtransfer.settings_schema import FilePath, Flag, Interval, ListOf, Optional, StrOptions, options, setting

    @dataclass
    class Demo:
        tracker: str = field(default="none", metadata=setting(
            "--tracker", "where to log", StrOptions(("none", "tensorboard", "mlflow"))))
        log: Path | None = field(default=None, metadata=setting("--log", "log folder", Optional(FilePath())))
        size: list[int] = field(default_factory=lambda: [1, 1], metadata=setting(
            "--size", "sizes", ListOf(Interval(int, 1, None))))
        plots: bool = field(default=True, metadata=setting("--no-plots", "no plots", Flag()))
        verbose: int = field(default=0, metadata=setting(None, "not a flag, so not a key", Interval(int, 0, None)))

    good = tmp_path / "good.toml"
    good.write_text('tracker = "mlflow"\nlog = "runs/log"\nsize = [3, 4]\nplots = false\n')
    assert read_config_file(good, options(Demo), "qtransfer demo") == {
        "tracker": "mlflow", "log": Path("runs/log"), "size": [3, 4], "plots": False}
    for text, says in [('tracker = "wandb"', "must be one of none, tensorboard, mlflow"),
                       ("size = []", "must be a non-empty list of integers"), ("plots = 0", "must be true or false"),
                       ("log = 3", "must be a path"), ("size = [1.5]", "must be a non-empty list of integers"),
                       ("verbose = 2", "unknown key 'verbose'")]:
        good.write_text(text)
        with pytest.raises(InputError, match=re.escape(says)):
            read_config_file(good, options(Demo), "qtransfer demo")
