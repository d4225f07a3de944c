"""K-fold cross-validation of heads on cached features: select the epoch on an inner part, score the held-out fold."""
from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from qtransfer import distributed
from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.data.splits import stratified_folds, stratified_holdout
from qtransfer.experiments.compare import parse_head, settings_params
from qtransfer.experiments.runner import Job, experiment, resumable, run_jobs
from qtransfer.experiments.settings import CVSettings
from qtransfer.experiments.stats import describe, scorecard, t_interval
from qtransfer.experiments.tuning import Candidate, Search, tune
from qtransfer.features.pipeline import FeatureSplit, load_features
from qtransfer.report import figures
from qtransfer.report.tables import cv_markdown, scorecard_markdown
from qtransfer.runtime import package_versions, resolve_device
from qtransfer.storage import atomic_write_text
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.fit import FitJob, FitResult


def cross_validate(settings: CVSettings, progress: bool = True, resume: Path | None = None,
                   changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Every head with every seed on every fold, same-shape ones trained together; cv.json and cv.md with
    per-fold rows, mean ± std and 95% intervals over folds (seeds averaged within a fold). Resumable: runs.jsonl
    keeps every finished (head, fold, seed). With --tensorboard or --mlflow, one tracked run with a child run per
    head, fold and seed. A resumed cross-validation keeps its saved settings, with `changes` applied to those that
    may change (config.RESUMABLE)."""
    if resume is not None:
        settings = CVSettings.load(resumable(Path(resume), "cv_config.json")).resumed(changes or ResumeChanges())
    settings.check()
    config = settings.config
    started = time.perf_counter()
    with experiment("cv", config, resume, {"cv_config.json": settings.to_json()},
                    lambda: load_features(config, progress=progress)) as run:
        features = run.prepared
        run.tracker.params(settings_params(settings))
        pool = features.train if settings.keep_val else features.train + features.val
        labels = pool.labels.tolist()
        folds = stratified_folds(labels, settings.folds, config.seed)
        device = resolve_device(config.device)
        seeds = settings.seed_list()
        parts = []
        for k in range(settings.folds):
            rest = sorted(set(range(len(labels))) - set(folds[k]))
            fit_idx, select_idx = stratified_holdout([labels[i] for i in rest], settings.inner_fraction,
                                                     config.seed + k)
            parts.append(tuple(pool.subset(idx).to_device(device) for idx in
                               (rest, [rest[i] for i in fit_idx], [rest[i] for i in select_idx], folds[k])))
        chosen = (_tune(settings, [p[0] for p in parts], run.dir, len(features.classes), device, features.classes,
                        progress) if settings.tune else {})
        jobs = []
        for k, (_, train, select, test) in enumerate(parts):
            for head in settings.heads:
                spec = parse_head(head)
                best = chosen[head, k][0] if chosen else None
                for seed in seeds:
                    cfg = replace(best.config if best else spec.config(config), seed=seed)
                    jobs.append(Job((head, k, seed), FitJob(cfg, train, select, test, best.fixed if best else {}),
                                    functools.partial(_fold_row, head, k, seed, (len(train.labels), len(select.labels)),
                                                      test.paths, best.point if best else {})))
        rows = run_jobs(jobs, _fold_key, run.dir, len(features.classes), device, features.classes, progress,
                        track=lambda r: _track_fold(run.tracker, config, r))
        rows.sort(key=lambda r: (settings.heads.index(r["head"]), r["fold"], seeds.index(r["seed"])))
        result = _result(settings, features.backbone, features.classes, len(labels), rows, started)
        if chosen:
            result["tuning"] = [{"head": h, "fold": k, **summary} for (h, k), (_, summary) in chosen.items()]
        result["per_fold_accuracy"] = per_fold_accuracy(rows, settings.heads, settings.folds)
        if len(settings.heads) > 1:
            result["scorecard"] = fold_scorecard(rows, result["per_fold_accuracy"], settings.margin, len(seeds))
        if distributed.is_main():
            atomic_write_text(run.dir / "cv.json", json.dumps(result, indent=2))
            card = result.get("scorecard")
            atomic_write_text(run.dir / "cv.md", cv_markdown(result, settings.metrics)
                              + ("\n" + scorecard_markdown(card, "Scorecard: held-out accuracy against "
                                                                  f"`{settings.heads[0]}`") if card else ""))
            friedman = result.get("scorecard", {}).get("friedman")
            if friedman:
                figures.plot_critical_difference(friedman["average_ranks"], friedman["nemenyi_p"],
                                                 run.dir / "cv_ranks.png", f"held-out accuracy, {settings.folds} folds",
                                                 cd=friedman["cd"])
        run.tracker.files(run.dir)
    return run.dir, result


def per_fold_accuracy(rows: list[dict[str, Any]], heads: list[str], folds: int) -> dict[str, list[float]]:
    """Each head's held-out accuracy per fold, its seeds averaged within the fold."""
    return {h: [_mean([r["held_out"]["accuracy"] for r in rows if r["head"] == h and r["fold"] == k])
                for k in range(folds)] for h in heads}


def fold_scorecard(rows: list[dict[str, Any]], per_fold: dict[str, list[float]], margin: float, seeds: int
                   ) -> dict[str, Any]:
    """The scorecard of held-out accuracy per fold of every head against the first."""
    reference = next(iter(per_fold))
    first = [r for r in rows if r["head"] == reference]
    n_train = round(_mean([r["train"] + r["select"] for r in first]))
    n_test = round(_mean([r["test"] for r in first]))
    return scorecard(per_fold, reference, n_train, n_test, margin=margin, seeds=seeds)


def _fold_means(by_fold: list[list[dict[str, Any]]], *keys: str) -> list[float]:
    """Per fold, the mean over its records (its seeds) of the value under `keys` (a record's ["held_out"]["f1"])."""
    return [sum(_value_at(r, keys) for r in rs) / len(rs) for rs in by_fold]


def _value_at(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = record
    for key in keys:
        value = value[key]
    return value


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _tune(settings: CVSettings, parts: list[FeatureSplit], run_dir: Path, n_classes: int, device: torch.device,
          classes: list[str], progress: bool) -> dict[tuple[Any, ...], tuple[Candidate, dict[str, Any]]]:
    """Per (head, outer fold): the configuration its inner CV of that fold's training part chose, and the search."""
    specs = {head: parse_head(head) for head in settings.heads}
    searches = [Search((head, k), spec.config(settings.config), tuple(key for key, _ in spec.settings), part,
                       settings.config.seed + k) for k, part in enumerate(parts) for head, spec in specs.items()]
    return tune(searches, settings.seed_list()[:settings.tune_seeds], run_dir, n_classes, device, classes, progress)


def _fold_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["head"], r["fold"], r.get("seed")


def _fold_row(head: str, k: int, seed: int, sizes: tuple[int, int], test_paths: list[Path], tuned: dict[str, Any],
              fit: FitResult) -> dict[str, Any]:
    """One line of a cross-validation's runs.jsonl: a head with a seed on a fold (`tuned`: what --tune chose)."""
    return {"head": head, "fold": k, "seed": seed, "train": sizes[0], "select": sizes[1], "test": len(test_paths),
            "best_epoch": fit.best["epoch"], "selected_on_inner_val_acc": fit.best["val_acc"], "held_out": fit.test,
            "choices": {**tuned, **fit.choices}, "train_s": fit.seconds, "stacked": fit.stacked,
            "curves": {m: [r[m] for r in fit.rows] for m in ("train_loss", "train_acc", "val_loss", "val_acc")},
            "test_files": [str(p) for p in test_paths]}


def _result(settings: CVSettings, backbone: str, classes: list[str], samples: int, rows: list[dict[str, Any]],
            started: float) -> dict[str, Any]:
    summary = {}
    for head in settings.heads:
        mine = [r for r in rows if r["head"] == head]
        by_fold = [[r for r in mine if r["fold"] == k] for k in range(settings.folds)]
        per_fold = functools.partial(_fold_means, by_fold)
        held = {m: per_fold("held_out", m) for m in settings.metrics
                if m in ("accuracy", "balanced_accuracy", "roc_auc")
                and all(r["held_out"][m] is not None for r in mine)}
        summary[head] = {
            "selected_on_inner_val_acc": describe(per_fold("selected_on_inner_val_acc")),
            **{f"held_out_{m}": {**describe(v), "ci95": t_interval(v, bounds=(0.0, 1.0))} for m, v in held.items()},
        }
    return {"settings": {**asdict(settings), "config": asdict(settings.config)}, "backbone": backbone,
            "classes": classes, "pooled": "train" if settings.keep_val else "train+val",
            "samples": samples, "seeds": settings.seed_list(), "folds": rows, "summary": summary,
            "seconds": time.perf_counter() - started, "versions": package_versions()}


def _track_fold(parent: Tracker, config: TrainConfig, row: dict[str, Any]) -> None:
    """One head with one seed on one fold as a child run: its settings, per-epoch metrics, and held-out scores."""
    with parent.child(f"{row['head']}-fold{row['fold']}-seed{row['seed']}") as child:
        child.params({**asdict(replace(config, seed=row["seed"])), "label": row["head"], "fold": row["fold"]})
        curves = row["curves"]
        for epoch, values in enumerate(zip(*curves.values()), 1):
            child.metrics(dict(zip(curves, values)), epoch)
        held = {f"held_out_{k}": v for k, v in (row["held_out"] or {}).items() if isinstance(v, (int, float))}
        child.results({"best_epoch": row["best_epoch"], "selected_on_inner_val_acc": row["selected_on_inner_val_acc"],
                       **held})
