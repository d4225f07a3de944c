"""Heads compared over seeds on one set of cached features: runs, summaries, paired differences."""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from qtransfer import distributed
from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.errors import InputError
from qtransfer.experiments.head_specs import HeadSpec, parse_head
from qtransfer.experiments.runner import Job, experiment, resumable, run_jobs
from qtransfer.experiments.settings import CompareSettings, check_tune_seeds
from qtransfer.experiments.stats import describe, paired_difference
from qtransfer.experiments.tuning import Candidate, Search, tune
from qtransfer.features.pipeline import Features, load_features
from qtransfer.report import figures, tables
from qtransfer.runtime import package_versions, resolve_device
from qtransfer.settings_schema import check_ranges
from qtransfer.storage import atomic_write_text
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.fit import FitJob, FitResult

METRICS = ("best_val_acc", "final_val_acc", "best_val_loss", "final_val_loss", "parameters", "train_s")
HELD_OUT = ("held_out_acc", "held_out_balanced_acc", "held_out_roc_auc")
NO_TRACKER = Tracker()  # what a fit reports to when nothing watches it
HELD_OUT_KEYS = {"accuracy": "held_out_acc", "balanced_accuracy": "held_out_balanced_acc",
                 "roc_auc": "held_out_roc_auc"}


def record(spec: HeadSpec, seed: int, augmented: bool, tuned: dict[str, Any], fit: FitResult) -> dict[str, Any]:
    """One line of runs.jsonl: what ran and how it did (`tuned`: what --tune chose)."""
    last = fit.rows[-1]
    return {
        "label": spec.label, "head": spec.head, "settings": dict(spec.settings), "seed": seed,
        "augmented": augmented, "best_epoch": fit.best["epoch"], "best_val_acc": fit.best["val_acc"],
        "best_val_loss": fit.best["val_loss"], "final_val_acc": last["val_acc"], "final_val_loss": last["val_loss"],
        "parameters": fit.parameters, "train_s": fit.seconds, "stacked": fit.stacked,
        "choices": {**tuned, **fit.choices},
        "curves": {k: [r[k] for r in fit.rows] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
        **({"held_out_acc": fit.test["accuracy"], "held_out_balanced_acc": fit.test["balanced_accuracy"],
            "held_out_roc_auc": fit.test["roc_auc"]} if fit.test else {}),
    }


def track_run(parent: Tracker, config: TrainConfig, r: dict[str, Any]) -> None:
    """One line of runs.jsonl as a child run of the comparison: its settings, per-epoch curves and results."""
    name = f"{r['label']}{'+aug' if r['augmented'] else ''}-seed{r['seed']}"
    with parent.child(name) as child:
        settings = replace(config, head=r["head"], seed=r["seed"], **r["settings"])
        child.params({**asdict(settings), "label": r["label"], "augmented": r["augmented"]})
        curves = r["curves"]
        for epoch, values in enumerate(zip(*curves.values()), 1):
            child.metrics(dict(zip(curves, values)), epoch)
        child.results({k: r[k] for k in ("best_epoch", "best_val_acc", "best_val_loss", "final_val_acc",
                                          "final_val_loss", "train_s", *HELD_OUT) if r.get(k) is not None})


# ------------------------------------------------------------------------------------- many fits


def run_grid(
    config: TrainConfig,
    features: Features,
    specs: Sequence[HeadSpec],
    seeds: Sequence[int],
    run_dir: Path,
    augmented: Iterable[bool] = (False,),
    progress: bool = True,
    tracker: Tracker | None = None,
    tuned: Mapping[str, Candidate] | None = None,
) -> list[dict[str, Any]]:
    """Every (spec, augmented, seed) fitted once, same-shape ones together; runs.jsonl in run_dir keeps finished
    ones, so a rerun resumes (a run of other epochs, from before a resume changed --epochs, is trained again: it
    keeps no checkpoint to extend). Each finished run is also a child run of `tracker` (rank 0's). `tuned`: per
    spec label, the configuration --tune chose, trained instead of the spec's settings."""
    device = resolve_device(config.device)
    train, val = features.train.to_device(device), features.val.to_device(device)
    aug = features.augmented_train.to_device(device) if features.views is not None else None
    test = features.test.to_device(device) if features.test is not None else None
    jobs = []
    for spec in specs:
        best = (tuned or {}).get(spec.label)
        for augment in augmented:
            for seed in seeds:
                cfg = replace(best.config if best else spec.config(config), seed=seed)
                cfg.validate()
                epochs = 1 if cfg.fitted_head() else cfg.epochs
                split = aug if augment else train
                if split is None:
                    raise ValueError("augmented jobs need features with augmented views")
                jobs.append(Job((spec.label, augment, seed, epochs),
                                FitJob(cfg, split, val, test, best.fixed if best else {}),
                                functools.partial(record, spec, seed, augment, best.point if best else {})))
    return run_jobs(jobs, run_key, run_dir, len(features.classes), device, features.classes, progress,
                    track=lambda r: track_run(tracker or NO_TRACKER, config, r))


def run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """The job a line of a comparison's runs.jsonl records: (label, augmented, seed, epochs)."""
    return r["label"], r["augmented"], r["seed"], len(r["curves"]["val_acc"])


def group_label(r: dict[str, Any], views: int) -> str:
    """The row's head label, marked '+aug<K>' when it trained on augmented views."""
    return f"{r['label']}+aug{views}" if r["augmented"] else r["label"]


def summarize(runs: Sequence[dict[str, Any]], views: int = 0) -> dict[str, Any]:
    """Per head: statistics of every metric over seeds; paired quantum − classical and aug − plain differences."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(group_label(r, views), []).append(r)
    heads = {
        label: {"head": rs[0]["head"], "settings": rs[0]["settings"], "augmented": rs[0]["augmented"],
                "seeds": [r["seed"] for r in rs],
                **{m: describe([r[m] for r in rs]) for m in METRICS + HELD_OUT if rs[0].get(m) is not None}}
        for label, rs in groups.items()
    }
    pairs = []
    for a, ra in groups.items():
        for b, rb in groups.items():
            quantum_vs_classical = (
                ra[0]["head"] == "quantum" and rb[0]["head"] != "quantum" and ra[0]["augmented"] == rb[0]["augmented"]
            )
            aug_vs_plain = ra[0]["augmented"] and not rb[0]["augmented"] and ra[0]["label"] == rb[0]["label"]
            if quantum_vs_classical or aug_vs_plain:
                pairs.extend(_paired(a, ra, b, rb))
    return {"heads": heads, "paired": pairs}


def _paired(a: str, ra: list[dict[str, Any]], b: str, rb: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_seed_a, by_seed_b = {r["seed"]: r for r in ra}, {r["seed"]: r for r in rb}
    seeds = sorted(by_seed_a.keys() & by_seed_b.keys())
    if not seeds:
        return []
    return [
        {"a": a, "b": b, "metric": m, "seeds": seeds,
         **paired_difference([by_seed_a[s][m] for s in seeds], [by_seed_b[s][m] for s in seeds])}
        for m in ("best_val_acc", "final_val_acc", "held_out_acc") if ra[0].get(m) is not None
    ]


# ------------------------------------------------------------------------------------- the command


def compare(settings: CompareSettings, resume: Path | None = None, progress: bool = True,
            changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Train every head over every seed on cached features; write compare.json, compare.md, compare.png. A resumed
    comparison keeps its saved settings, with `changes` applied to those that may change (config.RESUMABLE)."""
    if resume is not None:
        saved = CompareSettings.load(resumable(Path(resume), "compare_config.json"))
        settings = saved.resumed(changes or ResumeChanges())
    return run_comparison(settings, resume, "compare", progress, write_comparison)


def write_comparison(run_dir: Path, result: dict[str, Any]) -> None:
    """compare.json, compare.md and compare.png of a comparison's result (rank 0 only)."""
    if not distributed.is_main():
        return
    atomic_write_text(run_dir / "compare.json", json.dumps(result, indent=2))
    atomic_write_text(run_dir / "compare.md", tables.compare_markdown(result))
    figures.plot_compare(result, run_dir / "compare.png")


def run_comparison(
    settings: CompareSettings, resume: Path | None, name: str, progress: bool = True,
    write: Callable[[Path, dict[str, Any]], None] = lambda run_dir, result: None, files: dict[str, str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Features, then every (head, seed) fit, resumable from runs.jsonl (`settings` are then the resumed run's), then
    `write(run_dir, result)`; returns the directory and the result. The directory holds compare_config.json and
    `files` (name -> text) from the start, and is locked against other processes until its results are written.
    With --tensorboard or --mlflow the comparison is one tracked run with a child run per head and seed, and its
    files at the end."""
    specs = [parse_head(h) for h in settings.heads]
    _check_settings(settings, specs)
    started = time.perf_counter()
    files = {"compare_config.json": settings.to_json(), **(files or {})}
    with experiment(name, settings.config, resume, files,
                    lambda: load_features(settings.config, settings.augment_views, progress)) as run:
        run.tracker.params(settings_params(settings))
        result = compare_on(settings, run.prepared, run.dir, started, progress, run.tracker)
        write(run.dir, result)
        run.tracker.figures(sorted(run.dir.glob("*.png")))
        run.tracker.files(run.dir)
    return run.dir, result


def settings_params(settings: Any) -> dict[str, Any]:
    """An experiment's settings as one flat dict: its TrainConfig's fields, then its own."""
    values = asdict(settings)
    return {**values.pop("config"), **values}


def compare_on(
    settings: CompareSettings, features: Features, run_dir: Path, started: float, progress: bool = True,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Every (head, seed) fitted on given features, each a child run of `tracker`; the comparison's result (timed
    from `started`)."""
    augmented = (False, True) if settings.augment_views else (False,)
    specs = [parse_head(h) for h in settings.heads]
    search = _tune(settings, specs, features, run_dir, progress) if settings.tune else {}
    runs = run_grid(settings.config, features, specs, settings.seeds, run_dir, augmented, progress, tracker,
                    {label: best for label, (best, _) in search.items()})
    return {
        "backbone": features.backbone, "weights_id": features.weights_id, "data": settings.config.data,
        "classes": features.classes, "counts": {"train": len(features.train.labels), "val": len(features.val.labels)},
        "epochs": settings.config.epochs, "seeds": settings.seeds, "augment_views": settings.augment_views,
        "metrics": settings.metrics,
        **summarize(runs, settings.augment_views), "runs": runs, "total_s": time.perf_counter() - started,
        "versions": package_versions(),
        **({"tuning": {label: s for label, (_, s) in search.items()}} if search else {}),
    }


def _tune(settings: CompareSettings, specs: Sequence[HeadSpec], features: Features, run_dir: Path, progress: bool
          ) -> dict[str, tuple[Candidate, dict[str, Any]]]:
    """Per head: the configuration the inner CV of the training split chose (val, which selects the epoch, and any
    test split stay out), and the search."""
    device = resolve_device(settings.config.device)
    train = features.train.to_device(device)
    searches = [Search((spec.label,), spec.config(settings.config), tuple(k for k, _ in spec.settings), train,
                       settings.config.seed) for spec in specs]
    found = tune(searches, settings.seeds[:settings.tune_seeds], run_dir, len(features.classes), device,
                 features.classes, progress)
    return {tag[0]: result for tag, result in found.items()}


def _check_settings(settings: CompareSettings, specs: Sequence[HeadSpec]) -> None:
    unknown = set(settings.metrics) - set(HELD_OUT_KEYS)
    if unknown:
        raise InputError(f"unknown held-out metrics {sorted(unknown)}; compare shows {', '.join(HELD_OUT_KEYS)}")
    check_ranges(settings)
    check_tune_seeds(settings.tune_seeds, settings.seeds)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"a head is given twice: {labels}")
    for spec in specs:
        spec.config(settings.config).validate()
