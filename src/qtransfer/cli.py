"""The `qtransfer` command line: each subcommand parses flags, then imports and calls the library (so `--help`
answers before torch is loaded). Errors the user can fix (QTransferError) print one line; anything else is a
bug and prints its traceback."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from qtransfer.config import ResumeChanges, SettingsFile, TrainConfig
from qtransfer.config_file import read_config_file
from qtransfer.errors import InputError, QTransferError
from qtransfer.settings_schema import (
    FilePath,
    Flag,
    Interval,
    ListOf,
    Option,
    Optional,
    Setting,
    StrOptions,
    keys,
    option,
)
from qtransfer.settings_schema import options as declared

T = TypeVar("T")

# Settings of the command line only (not fields of a settings dataclass).
SEED_COUNT = Setting("--seeds", "number of seeds, counting up from --seed", Interval(int, 1, None))
EXTRACT_BATCH = Setting("--batch-size", "images per backbone batch", Interval(int, 1, None))
OTHER_DATA = Setting("--data", "another folder with the same classes", Optional(FilePath()))
# Commands whose settings a --config file may give.
FILE_COMMANDS = ("train", "compare", "sweep", "cv", "noise-scan")
EXTRACT_SETTINGS = ("data", "backbone", "weights", "device", "cache_dir", "num_workers")


def command_options(command: str) -> list[Option]:
    """The declared settings of a command: its flags, its --config keys, and how each is checked."""
    from qtransfer.experiments.settings import (
        CompareSettings,
        CVSettings,
        ReproduceOptions,
        ScanSettings,
        SweepSettings,
    )

    own: dict[str, type] = {"compare": CompareSettings, "sweep": SweepSettings, "cv": CVSettings}
    if command == "train":
        return declared(TrainConfig)
    if command == "extract":
        return [*declared(TrainConfig, exclude=[f.name for f in fields(TrainConfig) if f.name not in EXTRACT_SETTINGS]),
                Option("batch_size", EXTRACT_BATCH, 32)]
    if command in own:
        mine = declared(own[command])
        count = max(1, *(len(o.default) for o in mine if o.name == "seeds"))  # the default seeds count up from --seed
        seeds = [replace(o, default=None) if o.name == "seeds" else o for o in mine]  # unless given, --seeds counts
        return [*declared(TrainConfig, exclude=SettingsFile.PER_JOB), *seeds, Option("seeds", SEED_COUNT, count)]
    if command == "noise-scan":
        return [*declared(ScanSettings), Option("data", OTHER_DATA, None), option(TrainConfig, "device")]
    if command == "reproduce":
        return [o for o in declared(ReproduceOptions) if o.setting.flag is not None]
    if command in ("evaluate", "predict"):
        return [option(TrainConfig, "device")]
    return []


def _add_options(p: argparse.ArgumentParser, command: str) -> None:
    """The command's declared settings as flags: their types, defaults, choices and on/off actions."""
    for o in command_options(command):
        s = o.setting
        assert s.flag is not None
        if isinstance(s.rule, Flag):
            p.add_argument(s.flag, dest=o.key, action="store_false" if o.default else "store_true", help=s.help)
            continue
        rule = s.rule.rule if isinstance(s.rule, Optional) else s.rule
        extra: dict[str, Any] = {}
        if s.const is not None:
            extra.update(nargs="?", const=s.const)
        if isinstance(rule, ListOf):
            extra.update(nargs="+")
        if isinstance(rule, StrOptions):
            extra.update(choices=rule.options)
        p.add_argument(s.flag, dest=o.key, type=s.rule.parse, default=o.default, metavar=s.metavar,
                       help=_help(o), **extra)


def _help(o: Option) -> str:
    """A flag's help: the declared text, what its special values mean, and its default."""
    notes = []
    if isinstance(o.setting.rule, Interval) and o.setting.rule.special:
        notes.append(", ".join(f"{v}: {m}" for v, m in o.setting.rule.special.items()))
    if o.default is not None and o.setting.const is None:
        notes.append(f"default: {o.default!r}")
    return f"{o.setting.help} ({'; '.join(notes)})" if notes else o.setting.help


# Flags of `train`: config field -> (flag, help), as declared on TrainConfig.
TRAIN_FLAGS = {o.name: (o.setting.flag, o.setting.help) for o in declared(TrainConfig)}


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{o.name: getattr(args, o.key) for o in declared(TrainConfig) if hasattr(args, o.key)})


def _settings(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """A settings dataclass from the parsed flags of its declared settings, with `values` given otherwise."""
    given = {o.name: getattr(args, o.key) for o in declared(cls) if o.setting.flag is not None}
    return cls(**{**given, **values})


def _check_options(args: argparse.Namespace) -> None:
    """Refuse any declared setting of the command outside its range, naming its flag and the allowed range."""
    for o in command_options(args.command):
        o.check(getattr(args, o.key))


def _add_config_file_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", dest="config_file", type=Path, metavar="FILE",
                   help="settings from a .toml or .json file, keyed by the names of this command's settings as "
                        "config.json writes them (n_qubits, batch_size, ...); flags given here override it")


def cmd_train(args: argparse.Namespace) -> int:
    from qtransfer.report.tables import epoch_table
    from qtransfer.training.run import train

    config = _config(args)
    changes = _resume_changes(args) if args.resume else None
    run_dir, summary = train(config, resume=args.resume, progress=not args.quiet, changes=changes)
    if not _main_rank():
        return 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    print(epoch_table(rows))
    print(
        f"\nbest epoch {summary['best_epoch']}: val accuracy {summary['best_val_acc']:.4f} (selected on val, "
        f"loss {summary['best_val_loss']:.4f}); run directory {run_dir}"
    )
    if summary.get("head_choices"):
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in summary["head_choices"].items())
        print(f"fitted in one call; chosen by inner cross-validation on train: {chosen}")
    held = summary.get("held_out")
    if held:
        print(f"held-out test accuracy {held['accuracy']:.4f}, balanced {held['balanced_accuracy']:.4f} "
              f"({held['images']} images, {held['source']})")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from qtransfer.features.pipeline import extract_dataset

    config = _config(args)
    result = extract_dataset(config, batch_size=args.batch_size, progress=not args.quiet)
    if not _main_rank():
        return 0
    if args.json:
        print(json.dumps(result))
        return 0
    rate = f", {result['images_per_s']:.1f} images/s" if result["images_per_s"] else ""
    print(f"{result['images']} images, {result['computed']} computed, {result['seconds']:.1f} s{rate}; "
          f"cache {result['cache']}")
    return 0


def _main_rank() -> bool:
    from qtransfer import distributed

    return distributed.is_main()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from qtransfer.training.trained import TrainedModel

    model = TrainedModel.load(args.run_dir, device=args.device, progress=not args.quiet)
    settings = {"backend": args.backend, "shots": args.shots, "noise": args.noise,
                "device_options": args.device_options}
    if any(v is not None for v in settings.values()):
        model = model.simulated(**settings)
    result = model.evaluate(args.data, split=args.split, repeats=args.repeats, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    acc = result.get("accuracy_repeats")
    accuracy = (f"{acc['mean']:.4f} ± {acc['std']:.4f} over {acc['n']} repetitions" if acc
                else f"{result['accuracy']:.4f}")
    print(f"{result['split']} of {result['data']}: {result['images']} images, accuracy {accuracy}, "
          f"loss {result['loss']:.4f}" + (f" ({result['backend']})" if result["backend"] else ""))
    print(f"confusion (rows true, columns predicted, classes {result['classes']}): {result['confusion']}")
    return 0


def cmd_noise_scan(args: argparse.Namespace) -> int:
    from qtransfer.experiments.noise_scan import ScanSettings, noise_scan

    settings = _settings(ScanSettings, args)
    result = noise_scan(args.run_dir, settings, data=args.data, device=args.device, progress=not args.quiet)
    print(f"exact accuracy {result['exact_accuracy']:.4f}")
    for r in result["noise"]:
        print(f"{result['channel']} p={r['p']:<8g} accuracy {r['accuracy']:.4f}")
    for r in result["shots"]:
        print(f"shots {r['shots']:>6}: accuracy {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}")
    print(f"written: {args.run_dir / 'noise_scan.json'} and noise_scan.png ({result['seconds']:.0f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from qtransfer.training.trained import TrainedModel

    results = TrainedModel.load(args.run_dir, device=args.device, progress=not args.quiet).predict(args.images)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['class']:>12} {r['probability']:.3f}  {r['image']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from qtransfer.export.writers import export_run, sidecar_path

    doc = export_run(args.run_dir, args.format, args.out, progress=not args.quiet)
    written = ", ".join(str(args.out.parent / name) for name in doc["files"].values())
    print(f"{args.format}: {written}; preprocessing, classes and usage in {sidecar_path(args.out)}")
    if doc.get("exactness"):
        print(f"note: {doc['exactness']}")
    return 0


def _seeds(args: argparse.Namespace) -> list[int]:
    if args.seed_list:
        return list(args.seed_list)
    return list(range(args.seed, args.seed + args.seeds))


def cmd_compare(args: argparse.Namespace) -> int:
    from qtransfer.experiments.compare import CompareSettings, compare

    settings = _settings(CompareSettings, args, config=_config(args), seeds=_seeds(args))
    run_dir, _ = compare(settings, resume=args.resume, progress=not args.quiet, changes=_resume_changes(args, settings))
    if not _main_rank():
        return 0
    print((run_dir / "compare.md").read_text())
    print(f"comparison directory {run_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from qtransfer.experiments.sweep import SweepSettings, sweep

    settings = _settings(SweepSettings, args, config=_config(args), seeds=_seeds(args))
    run_dir, _ = sweep(settings, resume=args.resume, progress=not args.quiet, changes=_resume_changes(args, settings))
    if not _main_rank():
        return 0
    print((run_dir / "sweep.md").read_text())
    print(f"sweep directory {run_dir}")
    return 0


def _resume_changes(args: argparse.Namespace, settings: SettingsFile | None = None) -> ResumeChanges:
    """The settings this command line gave (its flags and --config file, not the defaults), for a resumed run,
    each under its setting's name (the seeds, whether given by --seeds or --seed-list, as the list)."""
    renamed: dict[str, tuple[str, Any]] = {}
    if settings is not None:
        renamed = {key: (name, getattr(settings, name)) for name, key in keys(type(settings)).items()}
        renamed["seeds"] = ("seeds", getattr(settings, "seeds", None))
    flags = {renamed.get(dest, (dest,))[0]: flag for dest, flag in args.flag_names.items()}
    values = {}
    for dest in args.given:
        name, value = renamed.get(dest, (dest, getattr(args, dest)))
        values[name] = value
        flags[name] = args.flag_names.get(dest, name)  # as typed: --seeds or --seed-list
    return ResumeChanges(values, flags)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from qtransfer.experiments.reproduce import (
        ReproduceOptions,
        command_line,
        reproduce,
    )

    options = _settings(ReproduceOptions, args, progress=not args.quiet)
    options.command = command_line(args.name, options, args.report)
    result = reproduce(args.name, options, report=args.report)
    print((result.run_dir / "reproduction.md").read_text())
    print(f"reproduction directory {result.run_dir} ({result.seconds / 60:.1f} min)")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from qtransfer.experiments.cv import CVSettings, cross_validate

    settings = _settings(CVSettings, args, config=_config(args), seeds=_seeds(args))
    changes = _resume_changes(args, settings)
    run_dir, _ = cross_validate(settings, progress=not args.quiet, resume=args.resume, changes=changes)
    if not _main_rank():
        return 0
    print((run_dir / "cv.md").read_text())
    print(f"cross-validation directory {run_dir}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from qtransfer.models.backbones import BACKBONES
    from qtransfer.models.heads import HEADS
    from qtransfer.models.quantum_backbones import QUANTUM_BACKBONES
    from qtransfer.quantum.circuits import TEMPLATES
    from qtransfer.quantum.embeddings import EMBEDDINGS
    from qtransfer.runtime import cache_root, package_versions, resolve_device

    cache = cache_root()
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cache.exists() else 0
    info = {
        "versions": package_versions(),
        "device": str(resolve_device("auto")),
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "cache": {"path": str(cache), "bytes": size},
        "backbones": [*sorted(BACKBONES), "timm:<model> (any timm model; pip install 'qtransfer[timm]')"],
        "quantum_backbones": {name: spec.description for name, spec in QUANTUM_BACKBONES.items()},
        "heads": sorted(HEADS),
        "templates": sorted(TEMPLATES),
        "embeddings": sorted(EMBEDDINGS),
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from qtransfer.data.download import get_dataset

    root = get_dataset(args.name, args.dest, url=args.url, progress=not args.quiet)
    print(f"{args.name} is ready in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="qtransfer", description="Hybrid classical-quantum transfer learning.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a head on a pretrained backbone's features")
    _add_config_file_flag(p)
    _add_options(p, "train")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run from its last.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("extract", help="fill the feature cache for every split of a dataset (under torchrun: shared)")
    _add_options(p, "extract")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("compare", help="heads over several seeds on the same cached features, with statistics")
    _add_config_file_flag(p)
    _add_options(p, "compare")
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted comparison")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="accuracy against circuit depth and qubit count, over seeds, with a plot")
    _add_config_file_flag(p)
    _add_options(p, "sweep")
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted sweep")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("reproduce", help="rerun one of the paper's experiments (spirals, ants-bees, circuit-sweep, "
                       "cifar, qc, qq), the baselines study, the benchmarking protocol or the width study")
    p.add_argument("name", help="spirals, ants-bees, circuit-sweep, cifar, qc, qq, baselines, benchmark or width")
    _add_options(p, "reproduce")
    p.add_argument("--report", type=Path, metavar="FILE", help="also write this experiment's section into FILE "
                   "(docs/REPRODUCTION.md), with its figures beside it")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("cv", help="k-fold cross-validation: epoch selected on an inner split, scored on held-out folds")
    _add_config_file_flag(p)
    _add_options(p, "cv")
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted cross-validation")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("evaluate", help="score a trained run on its validation split (or another folder)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, help="another folder with the same classes")
    p.add_argument("--split", default="val", help="which split to score (default: val)")
    _add_options(p, "evaluate")
    p.add_argument("--backend", help="run the trained circuit on 'torch' or 'pennylane:<device>' instead")
    p.add_argument("--shots", type=int, help="measurements per expectation value (0: exact)")
    p.add_argument("--noise", help="built-in engine noise, e.g. 'depolarizing=0.01,readout=0.02'")
    p.add_argument("--device-options",
                   help="PennyLane device options as JSON, e.g. '{\"noise_model\": \"FakeManilaV2\"}'")
    p.add_argument("--repeats", type=int, default=1, help="with --shots: repetitions with seeds --seed, --seed+1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repetition's shots (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("noise-scan", help="accuracy of a trained quantum head against noise strength and shots")
    p.add_argument("run_dir", type=Path)
    _add_config_file_flag(p)
    _add_options(p, "noise-scan")
    p.set_defaults(func=cmd_noise_scan)

    p = sub.add_parser("predict", help="class and probability of image files")
    p.add_argument("run_dir", type=Path)
    p.add_argument("images", type=Path, nargs="+")
    _add_options(p, "predict")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a trained run as one TorchScript or ONNX file (or its circuit as "
                       "OpenQASM 3) that runs without qtransfer, with a sidecar JSON")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", required=True, choices=["torchscript", "onnx", "qasm"],
                   help="torchscript or onnx: backbone + head, images in, probabilities out; qasm: the circuit with "
                        "its trained weights (OpenQASM 3) and the classical layers as FILE.classical.pt")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the model file (e.g. model.pt, model.onnx, model.qasm); the sidecar goes to FILE.json")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="versions, device, cache location and size, known names")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="download a dataset and check its checksums, or write a bundled one")
    p.add_argument("name", help="dataset name: hymenoptera (downloaded, ants / bees) or digits (scikit-learn's "
                   "8x8 handwritten digits, 10 classes, written as 32x32 PNGs with train / val / test splits)")
    p.add_argument("--dest", type=Path, default=Path("data"), help="folder to put it in (default: ./data)")
    p.add_argument("--url", help="download from this URL instead of the public one")
    p.set_defaults(func=cmd_data)
    return parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _with_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace,
                      argv: Sequence[str]) -> argparse.Namespace:
    """The command line parsed again with its --config file's settings as the defaults, so that its flags win;
    `given` lists the settings the flags and the file gave, `flag_names` each setting's flag."""
    from_file: dict[str, Any] = {}
    command = _commands(parser)[args.command]
    if getattr(args, "config_file", None) is not None:
        others = {f"qtransfer {c}": [o.key for o in command_options(c)] for c in FILE_COMMANDS if c != args.command}
        positionals = [a.dest for a in command._actions if not a.option_strings]
        from_file = read_config_file(args.config_file, command_options(args.command), command.prog, positionals,
                                     others)
        command.set_defaults(**from_file)
        args = parser.parse_args(argv)
    typed = _typed(args.command, argv)
    args.given = tuple(dict.fromkeys([*from_file, *typed]))
    args.flag_names = {a.dest: max(a.option_strings, key=len) for a in command._actions
                       if a.option_strings and a.dest not in NOT_SETTINGS}
    return args


# Destinations that are not settings of a run: how to run the command, not what it computes.
NOT_SETTINGS = frozenset({"help", "config_file", "resume", "json", "debug", "quiet", "command", "func"})


def _typed(command: str, argv: Sequence[str]) -> list[str]:
    """The destinations of the flags typed on the command line (not those left at their defaults)."""
    parser = build_parser()
    for action in _commands(parser)[command]._actions:
        if action.option_strings:
            action.default = argparse.SUPPRESS
    typed = vars(parser.parse_args(argv))
    return [dest for dest in typed if dest not in NOT_SETTINGS]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments of a command line: its flags over the settings of its --config file, over the defaults."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    return _with_config_file(parser, parser.parse_args(argv), argv)


def _settings_source(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """'FILE: ' or 'FILE (and --flag, ...): ' when a --config file gave settings, to head an error line; else ''."""
    if getattr(args, "config_file", None) is None:
        return ""
    flags = [t.split("=")[0] for t in argv[list(argv).index(args.command) + 1:] if t.startswith("--")]
    flags = [f for f in flags if not "--config".startswith(f)]
    return f"{args.config_file} (and {', '.join(flags)}): " if flags else f"{args.config_file}: "


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `qtransfer` and `python -m qtransfer`: 0 done, 1 user error, 2 usage error, 130 interrupted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    python_format = warnings.formatwarning
    with warnings.catch_warnings():  # the process's warning filters and format are its own again afterwards
        warnings.simplefilter("default")
        warnings.formatwarning = _format_warning
        try:
            return _handle(parser, args, argv)
        finally:
            warnings.formatwarning = python_format


def _handle(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    """Run the parsed command; a user error is one line (exit 1), an interruption exit 130, a bug its traceback."""
    handler: Callable[[argparse.Namespace], int] = args.func
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    source = ""  # errors of the file itself name it; later ones are headed by it
    try:
        args = _with_config_file(parser, args, argv)
        source = _settings_source(args, argv)
        _check_options(args)
        return _run(handler, args)
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        print(f"qtransfer {args.command}{_rank_label()}: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (`qtransfer info | head`): nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except QTransferError as err:
        if args.debug:
            raise
        print(f"qtransfer {args.command}{_rank_label()}: error: {source}{err}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001  (any other error is a bug: its traceback, then exit 1)
        traceback.print_exc()
        print(f"qtransfer {args.command}{_rank_label()}: an internal error (the traceback above); this is a bug in "
              "qtransfer: please report it with the command you ran and that traceback.", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


# Commands that share their work among torchrun's processes; the others run in one process.
DISTRIBUTED_COMMANDS = ("extract", "train", "compare", "sweep", "cv")


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call the command, inside a torch.distributed process group when torchrun launched several processes."""
    from qtransfer import distributed

    if not distributed.launched():
        return handler(args)
    if args.command not in DISTRIBUTED_COMMANDS:
        raise InputError(f"`qtransfer {args.command}` runs in one process; launch it without torchrun "
                         f"(torchrun shares {', '.join(DISTRIBUTED_COMMANDS)})")
    with distributed.session():
        return handler(args)


_PACKAGE_DIR = str(Path(__file__).parent)
_python_format_warning = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """qtransfer's own warnings as one line; other libraries' with their file and line, as Python shows them."""
    if filename.startswith(_PACKAGE_DIR):
        return f"qtransfer: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def _rank_label() -> str:
    """' (rank R)' under torchrun, where every process reports its own errors; else nothing."""
    from qtransfer import distributed

    return f" (rank {os.environ.get('RANK', '?')})" if distributed.launched() else ""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
