"""K-fold cross-validation of heads on cached features: select the epoch on an inner part, score the held-out fold."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from qtransfer.config import TrainConfig
from qtransfer.data.splits import stratified_folds, stratified_holdout
from qtransfer.errors import InputError
from qtransfer.experiments.compare import parse_head, settings_params
from qtransfer.experiments.stats import describe, t_interval
from qtransfer.features.pipeline import load_features
from qtransfer.report.tables import cv_markdown
from qtransfer.runtime import new_run_dir, package_versions, resolve_device
from qtransfer.storage import atomic_write_text
from qtransfer.tracking.start import check_installed, start_tracker
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.fit import FitResult, fit_features
from qtransfer.training.metrics import METRIC_NAMES


@dataclass
class CVSettings:
    """Heads, folds, what is pooled, and the inner fraction kept for selecting the epoch."""

    config: TrainConfig
    heads: list[str] = field(default_factory=lambda: ["quantum"])
    folds: int = 5
    keep_val: bool = False  # pool train only, leaving val aside; else train + val pooled
    inner_fraction: float = 0.2
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "balanced_accuracy", "roc_auc"])

    def check(self) -> None:
        """Refuse bad settings before any work."""
        unknown = set(self.metrics) - set(METRIC_NAMES)
        if unknown:
            raise InputError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}")
        if not 0 < self.inner_fraction < 1:
            raise InputError(f"the inner selection fraction must lie in (0, 1), got {self.inner_fraction}")
        if self.folds < 2:
            raise InputError(f"--folds must be >= 2, got {self.folds}")
        for h in self.heads:
            parse_head(h).config(self.config).validate()


def cross_validate(settings: CVSettings, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Every head on every fold; cv.json and cv.md with per-fold rows, mean ± std and 95% intervals. With
    --tensorboard or --mlflow, one tracked run with a child run per head and fold."""
    settings.check()
    config = settings.config
    check_installed(config.tensorboard, config.mlflow)
    started = time.perf_counter()
    features = load_features(config, progress=progress)
    pool = features.train if settings.keep_val else features.train + features.val
    labels = pool.labels.tolist()
    folds = stratified_folds(labels, settings.folds, config.seed)
    device = resolve_device(config.device)
    run_dir = new_run_dir(config.out, config.name or "cv")
    with start_tracker(run_dir, config.tensorboard, config.mlflow) as tracker:
        tracker.params(settings_params(settings))
        rows = []
        for head in settings.heads:
            spec = parse_head(head)
            for k in tqdm(range(settings.folds), desc=f"{head} folds", unit="fold", disable=not progress):
                rest = sorted(set(range(len(labels))) - set(folds[k]))
                fit_idx, select_idx = stratified_holdout([labels[i] for i in rest], settings.inner_fraction,
                                                         config.seed + k)
                train, select = pool.subset([rest[i] for i in fit_idx]), pool.subset([rest[i] for i in select_idx])
                test = pool.subset(folds[k])
                fit: FitResult = fit_features(spec.config(config), train.to_device(device), select.to_device(device),
                                              len(features.classes), device, test=test.to_device(device),
                                              classes=features.classes)
                rows.append({"head": head, "fold": k, "train": len(train.labels), "select": len(select.labels),
                             "test": len(test.labels), "best_epoch": fit.best["epoch"],
                             "selected_on_inner_val_acc": fit.best["val_acc"], "held_out": fit.test,
                             "choices": fit.choices, "train_s": fit.seconds,
                             "test_files": [str(p) for p in test.paths]})
                _track_fold(tracker, spec.config(config), rows[-1], fit)
        result = _result(settings, features.backbone, features.classes, len(labels), rows, started)
        atomic_write_text(run_dir / "cv.json", json.dumps(result, indent=2))
        atomic_write_text(run_dir / "cv.md", cv_markdown(result, settings.metrics))
        tracker.files(run_dir)
    return run_dir, result


def _result(settings: CVSettings, backbone: str, classes: list[str], samples: int, rows: list[dict[str, Any]],
            started: float) -> dict[str, Any]:
    summary = {}
    for head in settings.heads:
        mine = [r for r in rows if r["head"] == head]
        held = {m: [r["held_out"][m] for r in mine] for m in settings.metrics if m in ("accuracy", "balanced_accuracy", "roc_auc")}
        summary[head] = {
            "selected_on_inner_val_acc": describe([r["selected_on_inner_val_acc"] for r in mine]),
            **{f"held_out_{m}": {**describe(v), "ci95": t_interval(v, bounds=(0.0, 1.0))}
               for m, v in held.items() if None not in v},
        }
    return {"settings": {**asdict(settings), "config": asdict(settings.config)}, "backbone": backbone,
            "classes": classes, "pooled": "train" if settings.keep_val else "train+val",
            "samples": samples, "folds": rows, "summary": summary,
            "seconds": time.perf_counter() - started, "versions": package_versions()}


def _track_fold(parent: Tracker, config: TrainConfig, row: dict[str, Any], fit: FitResult) -> None:
    """One head on one fold as a child run: its settings, per-epoch metrics, and held-out scores."""
    with parent.child(f"{row['head']}-fold{row['fold']}") as child:
        child.params({**asdict(config), "label": row["head"], "fold": row["fold"]})
        for r in fit.rows:
            child.metrics({k: v for k, v in r.items() if k != "epoch"}, r["epoch"])
        held = {f"held_out_{k}": v for k, v in (fit.test or {}).items() if isinstance(v, (int, float))}
        child.results({"best_epoch": fit.best["epoch"], "selected_on_inner_val_acc": fit.best["val_acc"], **held})
