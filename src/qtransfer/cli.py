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
from dataclasses import fields
from pathlib import Path
from typing import Any

from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.config_file import read_config_file
from qtransfer.errors import InputError, QTransferError

# Flags of `train`: config field -> (flag, help). Types and defaults come from TrainConfig.
TRAIN_FLAGS = {
    "data": ("--data", "folder with train/ and val/ (one sub-folder of images per class), or a dataset name: "
                       "hymenoptera (downloaded and checked once) or digits (written), into <cache>/datasets/"),
    "backbone": ("--backbone", "pretrained network A (see `qtransfer info`); resnet18 is the paper's (its weights are downloaded)"),
    "weights": ("--weights", "'default' (torchvision cache, then download), a weights file, or 'none' (random)"),
    "head": ("--head", "network B: quantum, classical, linear; fitted by inner CV: logreg, svm, mlp, qkernel, "
                       "projected_qkernel, fourier (a classical control: the circuit's spectrum as Fourier "
                       "features); the quantum head without entanglement: --no-entangle"),
    "n_qubits": ("--qubits", "qubits of the circuit (also the width of the classical head)"),
    "depth": ("--depth", "variational layers of the circuit"),
    "template": ("--template", "the quantum head's circuit: tutorial, strongly_entangling, basic_entangler, ring_cz"),
    "embedding": ("--embedding", "the kernel heads' (qkernel, projected_qkernel) feature map: tutorial, iqp"),
    "backend": ("--backend", "'torch' (built-in engine) or 'pennylane:<device>'"),
    "q_delta": ("--q-delta", "spread of the initial circuit weights"),
    "epochs": ("--epochs", "training epochs"),
    "batch_size": ("--batch-size", "batch size"),
    "lr": ("--lr", "Adam learning rate"),
    "weight_decay": ("--weight-decay", "Adam's L2 penalty on the trained parameters"),
    "step_size": ("--step-size", "StepLR: epochs between learning-rate cuts"),
    "gamma": ("--gamma", "StepLR: factor of each cut"),
    "seed": ("--seed", "random seed"),
    "device": ("--device", "'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ..."),
    "out": ("--out", "where run directories are made"),
    "name": ("--name", "run name (the directory is <time>-<name>)"),
    "cache_dir": ("--cache-dir", "feature cache folder (default $QTRANSFER_CACHE or ~/.cache/qtransfer)"),
    "num_workers": ("--workers", "image-decoding worker processes (-1: from the CPU count)"),
    "threads": ("--threads", "CPU threads of each training step (0: one for small heads, every core for large "
                             "circuits)"),
    "pca": ("--pca", "fitted heads: first reduce the features to this many principal components (0: none)"),
    "shots": ("--shots", "measurements per expectation value (0: exact); training then uses parameter shifts"),
    "noise": ("--noise", "built-in engine noise, e.g. 'depolarizing=0.01,amplitude_damping=0.02@CNOT,readout=0.03'"),
    "holdout": ("--holdout", "hold out this stratified fraction of train as a test split, when there is no test/"),
    "holdout_list": ("--holdout-list", "hold out the files listed in a run's holdout.json (to compare runs)"),
    "device_options": ("--device-options", "PennyLane device options as JSON, e.g. '{\"noise_model\": \"FakeManilaV2\"}'"),
}


def _add_tune_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tune", action="store_true", help="search every head's declared space (8 configurations each) "
                   "by the same 5-fold inner CV of its training part, then train the chosen one")
    p.add_argument("--tune-seeds", type=int, default=1, help="--tune: the first this many seeds score each "
                   "configuration (default: 1)")


def _add_config_flags(p: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    defaults = TrainConfig()
    types = {f.name: f.type for f in fields(TrainConfig)}
    for field_name, (flag, help_text) in TRAIN_FLAGS.items():
        if field_name in exclude:
            continue
        default = getattr(defaults, field_name)
        kind = {"int": int, "float": float}.get(str(types[field_name]), str)
        p.add_argument(flag, dest=field_name, type=kind, default=default, help=f"{help_text} (default: {default!r})")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--no-entangle", dest="entangle", action="store_false",
                   help="a control: the circuit with its entangling (multi-qubit) gates removed")
    _add_tracking_flags(p)


# Settings of experiment tracking: config fields, so that a config file may set them too.
TRACKING_FIELDS = ("tensorboard", "mlflow")


def _add_tracking_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into the run directory (then: tensorboard --logdir OUT)")
    p.add_argument("--mlflow", nargs="?", const="local", default="", metavar="URI",
                   help="also log to MLflow: to the tracking URI, or without one ('local') to the SQLite database "
                        "OUT/mlflow.db (then: mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db)")


def _config(args: argparse.Namespace, **extra: object) -> TrainConfig:
    values = {name: getattr(args, name) for name in (*TRAIN_FLAGS, *TRACKING_FIELDS) if hasattr(args, name)}
    return TrainConfig(**values, no_cache=args.no_cache, **extra)  # type: ignore[arg-type]


def _add_config_file_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", dest="config_file", type=Path, metavar="FILE",
                   help="settings from a .toml or .json file, keyed by the names of this command's settings as "
                        "config.json writes them (n_qubits, batch_size, ...); flags given here override it")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    _add_config_file_flag(p)
    _add_config_flags(p)
    p.add_argument("--seed-parity", action="store_true",
                   help="the tutorial's way: no cache, backbone in train() mode every step, circuit per sample")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run from its last.pt")


def cmd_train(args: argparse.Namespace) -> int:
    from qtransfer.report.tables import epoch_table
    from qtransfer.training.run import train

    config = _config(args, seed_parity=args.seed_parity)
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

    config = TrainConfig(data=args.data, backbone=args.backbone, weights=args.weights, device=args.device,
                         cache_dir=args.cache_dir, num_workers=args.num_workers)
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
    settings = {"backend": args.backend, "shots": args.shots, "noise": args.noise, "device_options": args.device_options}
    if any(v is not None for v in settings.values()):
        model = model.simulated(**settings)
    result = model.evaluate(args.data, split=args.split, repeats=args.repeats, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    acc = result.get("accuracy_repeats")
    accuracy = f"{acc['mean']:.4f} ± {acc['std']:.4f} over {acc['n']} repetitions" if acc else f"{result['accuracy']:.4f}"
    print(f"{result['split']} of {result['data']}: {result['images']} images, accuracy {accuracy}, "
          f"loss {result['loss']:.4f}" + (f" ({result['backend']})" if result["backend"] else ""))
    print(f"confusion (rows true, columns predicted, classes {result['classes']}): {result['confusion']}")
    return 0


def cmd_noise_scan(args: argparse.Namespace) -> int:
    from qtransfer.experiments.noise_scan import ScanSettings, noise_scan

    defaults = ScanSettings()
    settings = ScanSettings(args.channel, args.strengths or defaults.strengths, args.shots_list or defaults.shots,
                            args.repeats, args.readout)
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
    if args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    return list(range(args.seed, args.seed + args.seeds))


def _add_seed_flags(p: argparse.ArgumentParser, count: int) -> None:
    p.add_argument("--seeds", type=int, default=count,
                   help=f"number of seeds, counting up from --seed (default: {count})")
    p.add_argument("--seed-list", type=int, nargs="+", metavar="SEED", help="these seeds instead of --seeds")


def cmd_compare(args: argparse.Namespace) -> int:
    from qtransfer.experiments.compare import CompareSettings, compare

    settings = CompareSettings(_config(args), list(args.heads), _seeds(args), args.augment_views, list(args.metrics),
                               args.tune, args.tune_seeds)
    changes = _resume_changes(args, {"seeds": ("seeds", settings.seeds), "seed_list": ("seeds", settings.seeds)})
    run_dir, _ = compare(settings, resume=args.resume, progress=not args.quiet, changes=changes)
    if not _main_rank():
        return 0
    print((run_dir / "compare.md").read_text())
    print(f"comparison directory {run_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from qtransfer.experiments.sweep import SweepSettings, sweep

    settings = SweepSettings(_config(args), list(args.depths), list(args.qubit_counts), _seeds(args),
                             no_classical=args.no_classical)
    changes = _resume_changes(args, {"seeds": ("seeds", settings.seeds), "seed_list": ("seeds", settings.seeds),
                                     "qubit_counts": ("qubits", settings.qubits),
                                     "no_classical": ("no_classical", settings.no_classical)})
    run_dir, _ = sweep(settings, resume=args.resume, progress=not args.quiet, changes=changes)
    if not _main_rank():
        return 0
    print((run_dir / "sweep.md").read_text())
    print(f"sweep directory {run_dir}")
    return 0


def _resume_changes(args: argparse.Namespace, renamed: dict[str, tuple[str, Any]] | None = None) -> ResumeChanges:
    """The settings this command line gave (its flags and --config file, not the defaults), for a resumed run;
    `renamed`: a flag's destination -> the setting it gives and its value, where they are not the same."""
    renamed = renamed or {}
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

    options = ReproduceOptions(
        data=str(args.data) if args.data else None, out=args.out, seeds=args.seed_list, epochs=args.epochs,
        steps=args.steps, augment_views=args.augment_views, backbones=args.backbones, heads=args.heads, cache_dir=args.cache_dir,
        cifar=str(args.cifar) if args.cifar else None,
        device=args.device, num_workers=args.num_workers, progress=not args.quiet, cubic_phase=args.cubic_phase,
    )
    options.command = command_line(args.name, options, args.report)
    result = reproduce(args.name, options, report=args.report)
    print((result.run_dir / "reproduction.md").read_text())
    print(f"reproduction directory {result.run_dir} ({result.seconds / 60:.1f} min)")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from qtransfer.experiments.cv import CVSettings, cross_validate

    settings = CVSettings(_config(args), list(args.heads), args.folds, args.keep_val, args.inner_fraction,
                          list(args.metrics), _seeds(args), args.tune, args.tune_seeds, args.margin)
    changes = _resume_changes(args, {"seeds": ("seeds", settings.seeds), "seed_list": ("seeds", settings.seeds)})
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
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("extract", help="fill the feature cache for every split of a dataset (under torchrun: shared)")
    for field_name in ("data", "backbone", "weights", "device", "cache_dir", "num_workers"):
        flag, help_text = TRAIN_FLAGS[field_name]
        default = getattr(TrainConfig(), field_name)
        p.add_argument(flag, dest=field_name, type=type(default), default=default, help=f"{help_text} (default: {default!r})")
    p.add_argument("--batch-size", type=int, default=32, help="images per backbone batch (default: 32)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("compare", help="heads over several seeds on the same cached features, with statistics")
    p.add_argument("--heads", nargs="+", default=["quantum", "classical", "linear"], metavar="HEAD",
                   help="heads by name, with settings: quantum classical linear quantum:depth=2,qubits=6 "
                        "quantum:entangle=false fourier "
                        "(default: quantum classical linear)")
    _add_config_file_flag(p)
    _add_config_flags(p, exclude=("head",))
    _add_seed_flags(p, 5)
    _add_tune_flags(p)
    p.add_argument("--augment-views", type=int, default=0, metavar="K",
                   help="also train every head on K cached augmented views of each training image (default: 0)")
    p.add_argument("--metrics", nargs="+", default=["accuracy", "balanced_accuracy"], metavar="NAME",
                   help="held-out columns when there is a test split: accuracy balanced_accuracy roc_auc")
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted comparison")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="accuracy against circuit depth and qubit count, over seeds, with a plot")
    _add_config_file_flag(p)
    _add_config_flags(p, exclude=("head",))
    p.add_argument("--depths", type=int, nargs="+", default=list(range(11)), metavar="D",
                   help="depths at --qubits (default: 0 to 10; 0 keeps only the embedding)")
    p.add_argument("--qubit-counts", type=int, nargs="+", default=list(range(2, 13)), metavar="Q",
                   help="qubit counts at --depth (default: 2 to 12)")
    p.add_argument("--no-classical", action="store_true", help="leave out the classical heads of the same widths")
    _add_seed_flags(p, 5)
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted sweep")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("reproduce", help="rerun one of the paper's experiments (spirals, ants-bees, circuit-sweep, "
                       "cifar, qc, qq), the baselines study, the benchmarking protocol or the width study")
    p.add_argument("name", help="spirals, ants-bees, circuit-sweep, cifar, qc, qq, baselines, benchmark or width")
    p.add_argument("--cifar", type=Path, metavar="DIR", help="benchmark: a CIFAR-10 root (with "
                   "cifar-10-batches-py/), adding the paper's dogs/cats and planes/cars")
    p.add_argument("--data", type=Path, help="dataset folder (ants-bees: hymenoptera_data; cifar: CIFAR-10 root; "
                   "qc, qq: the folder with the paper's pretrained .npy files, else they are fetched and cached)")
    p.add_argument("--seed-list", type=int, nargs="+", metavar="SEED", help="seeds (default: the experiment's five)")
    p.add_argument("--epochs", type=int, help="epochs (default: the paper's)")
    p.add_argument("--steps", type=int, help="spirals, qc, qq: training steps (default: the paper's)")
    p.add_argument("--augment-views", type=int, default=10, metavar="K",
                   help="ants-bees: also train on K augmented views per training image (default: 10; 0: off)")
    p.add_argument("--backbones", nargs="+", metavar="NAME",
                   help="ants-bees: backbones (default: resnet18 where its weights are present, efficientnet_lite0); "
                   "baselines: its one backbone (default: efficientnet_lite0)")
    p.add_argument("--heads", nargs="+", metavar="HEAD", help="baselines: the heads (default: every quantum, "
                   "classical and fitted head, and svm:pca=4)")
    p.add_argument("--cubic-phase", choices=("exact", "truncated"), default="exact",
                   help="qq: the CV cubic phase gate of its earlier rows: exact (the gate's true elements below the "
                   "cutoff, default) or truncated (exp of the truncated x^3, Strawberry Fields' and the paper's); "
                   "its sections (a)-(c) run both")
    p.add_argument("--report", type=Path, metavar="FILE", help="also write this experiment's section into FILE "
                   "(docs/REPRODUCTION.md), with its figures beside it")
    p.add_argument("--out", default="runs", help="where run directories are made (default: runs)")
    p.add_argument("--cache-dir", default="", help="feature cache folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", dest="num_workers", type=int, default=-1, help="image-decoding processes")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("cv", help="k-fold cross-validation: epoch selected on an inner split, scored on held-out folds")
    _add_config_file_flag(p)
    _add_config_flags(p, exclude=("head",))
    p.add_argument("--heads", nargs="+", default=["quantum"], metavar="HEAD", help="heads (default: quantum)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    p.add_argument("--keep-val", action="store_true", help="pool train/ only and leave val/ aside (default: pool both)")
    p.add_argument("--inner-fraction", type=float, default=0.2,
                   help="share of each fold's training part that selects the epoch (default: 0.2)")
    p.add_argument("--metrics", nargs="+", default=["accuracy", "balanced_accuracy", "roc_auc"], metavar="NAME",
                   help="columns of the table: accuracy balanced_accuracy precision recall f1 roc_auc confusion")
    _add_seed_flags(p, 1)
    _add_tune_flags(p)
    p.add_argument("--margin", type=float, default=0.01, help="equivalence margin of the scorecard's TOST, in "
                   "accuracy (default: 0.01, one point)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="finish an interrupted cross-validation")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("evaluate", help="score a trained run on its validation split (or another folder)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, help="another folder with the same classes")
    p.add_argument("--split", default="val", help="which split to score (default: val)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", help="run the trained circuit on 'torch' or 'pennylane:<device>' instead")
    p.add_argument("--shots", type=int, help="measurements per expectation value (0: exact)")
    p.add_argument("--noise", help="built-in engine noise, e.g. 'depolarizing=0.01,readout=0.02'")
    p.add_argument("--device-options", help="PennyLane device options as JSON, e.g. '{\"noise_model\": \"FakeManilaV2\"}'")
    p.add_argument("--repeats", type=int, default=1, help="with --shots: repetitions with seeds --seed, --seed+1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repetition's shots (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("noise-scan", help="accuracy of a trained quantum head against noise strength and shots")
    p.add_argument("run_dir", type=Path)
    _add_config_file_flag(p)
    p.add_argument("--channel", default="depolarizing", help="depolarizing, amplitude_damping, phase_damping, "
                   "bit_flip or phase_flip, after every gate (default: depolarizing)")
    p.add_argument("--strengths", type=float, nargs="+", metavar="P", help="channel strengths (default: 0 to 0.3)")
    p.add_argument("--shots-list", type=int, nargs="+", metavar="N", help="shot counts (default: 16 to 4096)")
    p.add_argument("--repeats", type=int, default=5, help="repetitions of each shot count (default: 5)")
    p.add_argument("--readout", type=float, default=0.0, help="readout error added to every noise point")
    p.add_argument("--data", type=Path, help="another folder with the same classes")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_noise_scan)

    p = sub.add_parser("predict", help="class and probability of image files")
    p.add_argument("run_dir", type=Path)
    p.add_argument("images", type=Path, nargs="+")
    p.add_argument("--device", default="auto")
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
        others = [p for p in _commands(parser).values() if p is not command]
        from_file = read_config_file(args.config_file, command, others)
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
    except Exception:
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
