"""K-fold cross-validation of heads on cached features: select the epoch on an inner part, score the held-out fold."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .compare import FitResult, fit_features, load_features, parse_head
from .config import TrainConfig
from .metrics import METRIC_NAMES
from .splits import stratified_folds, stratified_holdout
from .stats import describe, pm
from .storage import atomic_write_text
from .train import FeatureSplit, new_run_dir, package_versions, resolve_device

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: 1.96).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_interval(values: list[float]) -> tuple[float, float]:
    """95% interval of the mean of `values` in [0, 1] (Student's t, as folds are few; clipped to [0, 1])."""
    d = describe(values)
    if d["n"] < 2:
        return d["mean"], d["mean"]
    t = _T95[d["n"] - 2] if d["n"] - 1 <= len(_T95) else 1.96
    half = t * d["std"] / math.sqrt(d["n"])
    return max(0.0, d["mean"] - half), min(1.0, d["mean"] + half)  # every metric here lies in [0, 1]


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
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}")
        if not 0 < self.inner_fraction < 1:
            raise ValueError(f"the inner selection fraction must lie in (0, 1), got {self.inner_fraction}")
        if self.folds < 2:
            raise ValueError(f"--folds must be >= 2, got {self.folds}")
        for h in self.heads:
            parse_head(h).config(self.config).validate()


def _subset(split: FeatureSplit, idx: list[int]) -> FeatureSplit:
    index = torch.tensor(idx, dtype=torch.long)
    return FeatureSplit(split.features[index], split.labels[index], [split.paths[i] for i in idx])


def cross_validate(settings: CVSettings) -> tuple[Path, dict[str, Any]]:
    """Every head on every fold; cv.json and cv.md with per-fold rows, mean ± std and 95% intervals."""
    settings.check()
    started = time.perf_counter()
    config = settings.config
    features = load_features(config)
    pool = features.train if settings.keep_val else FeatureSplit(
        torch.cat([features.train.features, features.val.features]),
        torch.cat([features.train.labels, features.val.labels]), features.train.paths + features.val.paths)
    labels = pool.labels.tolist()
    folds = stratified_folds(labels, settings.folds, config.seed)
    device = resolve_device(config.device)
    run_dir = new_run_dir(replace(config, name=config.name or "cv"))
    rows = []
    for head in settings.heads:
        spec = parse_head(head)
        for k in tqdm(range(settings.folds), desc=f"{head} folds", unit="fold"):
            rest = sorted(set(range(len(labels))) - set(folds[k]))
            fit_idx, select_idx = stratified_holdout([labels[i] for i in rest], settings.inner_fraction, config.seed + k)
            train, select = _subset(pool, [rest[i] for i in fit_idx]), _subset(pool, [rest[i] for i in select_idx])
            test = _subset(pool, folds[k])
            fit: FitResult = fit_features(spec.config(config), train.to_device(device), select.to_device(device),
                                          len(features.classes), device, test=test.to_device(device),
                                          classes=features.classes)
            rows.append({"head": head, "fold": k, "train": len(train.labels), "select": len(select.labels),
                         "test": len(test.labels), "best_epoch": fit.best["epoch"],
                         "selected_on_inner_val_acc": fit.best["val_acc"], "held_out": fit.test,
                         "test_files": [str(p) for p in test.paths]})
    summary = {}
    for head in settings.heads:
        mine = [r for r in rows if r["head"] == head]
        held = {m: [r["held_out"][m] for r in mine] for m in settings.metrics if m in ("accuracy", "balanced_accuracy", "roc_auc")}
        summary[head] = {
            "selected_on_inner_val_acc": describe([r["selected_on_inner_val_acc"] for r in mine]),
            **{f"held_out_{m}": {**describe(v), "ci95": t_interval(v)} for m, v in held.items() if None not in v},
        }
    result = {"settings": {**asdict(settings), "config": asdict(config)}, "backbone": features.backbone,
              "classes": features.classes, "pooled": "train" if settings.keep_val else "train+val",
              "samples": len(labels), "folds": rows, "summary": summary,
              "seconds": time.perf_counter() - started, "versions": package_versions()}
    atomic_write_text(run_dir / "cv.json", json.dumps(result, indent=2))
    atomic_write_text(run_dir / "cv.md", cv_markdown(result, settings.metrics))
    return run_dir, result


def cv_markdown(result: dict[str, Any], metrics: list[str]) -> str:
    """cv.md: one row per fold, then mean ± std and 95% intervals per head."""
    s = result["settings"]
    lines = [f"# {s['folds']}-fold cross-validation on {result['backbone']} features", "",
             (f"{result['samples']} images pooled from {result['pooled']}, stratified folds (seed "
             f"{s['config']['seed']}); in each fold {int(s['inner_fraction'] * 100)}% of the rest selects the epoch "
             "(selected-on) and the fold itself is scored once (held-out)."), "",
             "| head | fold | train / select / test | best epoch | selected-on inner val acc | "
             + " | ".join(f"held-out {m}" for m in metrics) + " |",
             "|---|---|---|---|---|" + "---|" * len(metrics)]
    for r in result["folds"]:
        cells = [_cell(r["held_out"][m]) for m in metrics]
        lines.append(f"| `{r['head']}` | {r['fold']} | {r['train']} / {r['select']} / {r['test']} | {r['best_epoch']} "
                     f"| {r['selected_on_inner_val_acc']:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "| head | selected-on inner val acc | held-out accuracy (mean ± std) | 95% interval (t) | gap |",
              "|---|---|---|---|---|"]
    for head, h in result["summary"].items():
        sel, acc = h["selected_on_inner_val_acc"], h.get("held_out_accuracy")
        if acc:
            lines.append(f"| `{head}` | {pm(sel)} | {pm(acc)} "
                         f"| [{acc['ci95'][0]:.4f}, {acc['ci95'][1]:.4f}] | {sel['mean'] - acc['mean']:+.4f} |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" for k, v in value.items())
    return str(value)
