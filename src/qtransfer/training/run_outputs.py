"""What a finished `train` run leaves for people: the selected epoch's scores on val and on the held-out test split,
its figures, summary.json, and the final metrics its tracker gets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qtransfer.data.images import load_image
from qtransfer.report import figures
from qtransfer.runtime import package_versions
from qtransfer.storage import atomic_write_text
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.loop import Loop, evaluate
from qtransfer.training.metrics import classification_metrics, confusion
from qtransfer.training.run_data import RunData
from qtransfer.training.run_model import RunModel

FIGURES = ("curves.png", "confusion.png", "predictions.png")


class RunOutputs:
    """The files a finished run writes into its directory (figures, summary.json) and what its tracker is told."""

    def __init__(self, run_dir: Path, tracker: Tracker):
        self.dir, self.tracker = Path(run_dir), tracker

    @staticmethod
    def held_out(model: RunModel, data: RunData, device: torch.device) -> dict[str, Any] | None:
        """Metrics of the model on the test split, which played no part in training or selection (None: no test)."""
        if "test" not in data.splits:
            return None
        test = evaluate(model.module, data.eval_batches("test"), device)
        source = "carved from train (holdout.json)" if data.holdout else "test/ folder"
        return {"split": "test", "source": source, "images": len(test["labels"]),
                **classification_metrics(test["labels"], test["probs"], data.classes)}

    def figures(self, loop: Loop, val: dict[str, Any], data: RunData) -> Tensor:
        """Draw the curves of every epoch, the val confusion matrix and the val predictions; returns the matrix."""
        classes = data.classes
        matrix = confusion(val["labels"], val["pred"], len(classes))
        curves, confusions, predictions = (self.dir / name for name in FIGURES)
        figures.plot_curves(loop.rows, loop.best, curves)
        figures.plot_confusion(matrix, classes, confusions)
        val_paths = [p for p, _ in data.splits["val"].samples]
        figures.plot_predictions(val_paths, val["labels"], val["pred"], val["probs"], classes, predictions,
                                 load=load_image)
        return matrix

    @staticmethod
    def summary(loop: Loop, data: RunData, model: RunModel, matrix: Tensor, held_out: dict[str, Any] | None,
                timings: dict[str, float], device: torch.device) -> dict[str, Any]:
        """What summary.json holds: the selected epoch, its scores, the data, the model's size, times and versions."""
        rows, best = loop.rows, loop.best
        return {
            "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"],
            "best_val_loss": best["val_loss"],
            "final_val_acc": rows[-1]["val_acc"],
            # which number is which: the epoch is selected on val, so best_val_acc is biased upward
            "accuracy": {"selected_on_val": best["val_acc"],
                         "held_out": held_out["accuracy"] if held_out else None},
            "held_out": held_out,
            "epochs": len(rows),
            "confusion": matrix.tolist(),
            "classes": data.classes,
            **data.summary(),
            "trainable_parameters": model.trainable_parameters(),
            "head_choices": getattr(model.head, "choices", {}),  # hyper-parameters a fitted head chose by inner CV
            "timings": timings,
            "threads": loop.threads,
            "seed": model.config.seed,
            "device": str(device),
            "versions": package_versions(),
        }

    def write(self, summary: dict[str, Any]) -> None:
        """summary.json, then the tracker's final metrics, figures and the directory's files."""
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2))
        held = summary["held_out"] or {}
        results = {"best_epoch": summary["best_epoch"], "best_val_acc": summary["best_val_acc"],
                   "best_val_loss": summary["best_val_loss"], "final_val_acc": summary["final_val_acc"],
                   **{f"held_out_{k}": held[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")
                      if held.get(k) is not None}}
        self.tracker.results(results)
        self.tracker.figures(self.dir / name for name in FIGURES)
        self.tracker.files(self.dir)
