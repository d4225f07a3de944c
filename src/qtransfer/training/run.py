"""`qtransfer train`: a head trained on a frozen backbone's cached features in a run directory, checkpointed
after every epoch and resumable."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from qtransfer import distributed
from qtransfer.config import ResumeChanges, TrainConfig
from qtransfer.data.images import load_image
from qtransfer.errors import InputError, Interrupted, WriteError
from qtransfer.features.pipeline import (
    FeatureSplit,
    dataset_splits,
    load_backbone,
    split_features,
)
from qtransfer.formats import CHECKPOINT
from qtransfer.models.heads import build_head
from qtransfer.report import figures
from qtransfer.runtime import (
    check_run_dir,
    new_run_dir,
    package_versions,
    resolve_device,
    run_dir_lock,
)
from qtransfer.storage import (
    atomic_torch_save,
    atomic_write_text,
    remove_stale_temp_files,
)
from qtransfer.tracking.start import check_installed, start_tracker
from qtransfer.tracking.tracker import Tracker
from qtransfer.training.checkpoints import (
    check_compatible,
    load_buffers,
    load_checkpoint,
)
from qtransfer.training.loop import Loop, StackedBatch, chunks, evaluate
from qtransfer.training.metrics import classification_metrics, confusion


class TutorialModel(nn.Sequential):
    """Backbone then head, trained as the tutorial trains them: its model.train() changes only the BatchNorm
    layers of a frozen ResNet (their statistics drift), so here only those and the head leave eval mode."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__(backbone, head)

    def train(self, mode: bool = True) -> TutorialModel:
        self.training = mode
        backbone, head = self
        head.train(mode)
        backbone.eval()
        if mode:
            for m in backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
        return self


class Run:
    """A training run in its directory: backbone, head, the loop, checkpoints, the summary."""

    def __init__(self, config: TrainConfig, device: torch.device, progress: bool = True):
        self.config, self.device, self.progress = config, device, progress
        self.dir = Path(config.out)
        self.backbone = load_backbone(config, progress)
        self.splits, self.holdout = dataset_splits(config, self.backbone, progress)
        self.classes = self.splits["train"].classes
        torch.manual_seed(config.seed)
        self.head = build_head(config, self.backbone.out_features, len(self.classes))
        self.model: nn.Module = TutorialModel(self.backbone, self.head) if config.seed_parity else self.head
        self.model.to(device)
        self.loop = Loop(self.model, self.head.parameters(), config, device, shared=True)
        self.features: dict[str, FeatureSplit] | None = None
        self.timings: dict[str, float] = {}
        self.tracker = Tracker()

    # -- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Extract (or read cached) features, unless seed-parity mode runs the backbone every step."""
        if self.config.seed_parity:
            return
        t = time.perf_counter()
        # extraction's data loaders draw from torch's RNG; training must not depend on whether features were cached
        with torch.random.fork_rng(devices=[]):
            self.features = split_features(self.config, self.backbone, self.splits, self.device,
                                           progress=self.progress)
        self.timings["features_s"] = time.perf_counter() - t

    def _train_batches(self) -> Iterator[StackedBatch]:
        if self.features is not None:
            f = self.features["train"]
            return self.loop.batches(f.features, f.labels)
        return ((x.unsqueeze(0), y.unsqueeze(0), [len(y)]) for x, y in self._image_loader("train", shuffle=True))

    def _eval_batches(self, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        if self.features is not None:
            f = self.features[split]
            return chunks(f.features, f.labels)
        return iter(self._image_loader(split, shuffle=False))

    def _image_loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[split], batch_size=self.config.batch_size, shuffle=shuffle,
            generator=self.loop.generator if shuffle else None, num_workers=self.config.workers(),
        )

    # -- epochs --------------------------------------------------------------------------
    def fit(self) -> None:
        """Train the remaining epochs, checkpointing after each."""
        seconds = self.loop.run(self._train_batches, self._eval_batches, self._after_epoch, self._nan_hint,
                                progress=self.progress)
        self.timings["train_s"] = self.timings.get("train_s", 0.0) + seconds

    def _nan_hint(self) -> str:
        best = self.loop.best["epoch"]
        return (f"the best checkpoint so far (epoch {best}) is kept in {self.dir / 'best.pt'}" if best
                else "no epoch finished, so there is no checkpoint")

    def _after_epoch(self, rows: list[dict[str, Any]]) -> None:
        (row,) = rows
        if row["improved"]:
            self._write(self.dir / "best.pt", lambda path: atomic_torch_save(self._model_state(), path))
        self._save_last()
        self.tracker.metrics({k: v for k, v in row.items() if k not in ("epoch", "improved")}, row["epoch"])

    # -- checkpoints ---------------------------------------------------------------------
    def _model_state(self) -> dict[str, Any]:
        state = CHECKPOINT.stamp({"head": self.head.state_dict(), "classes": self.classes,
                                  "epoch": self.loop.best["epoch"], "config": json.loads(self.config.to_json())})
        if self.config.seed_parity:  # BatchNorm statistics drift in this mode; keep them
            state["backbone_buffers"] = dict(self.backbone.named_buffers())
        return state

    def _save_last(self) -> None:
        state = {**self._model_state(), **self.loop.state_dict(), "timings": self.timings}
        self._write(self.dir / "last.pt", lambda path: atomic_torch_save(state, path))
        self._save_metrics()

    def _save_metrics(self) -> None:
        metrics = "".join(json.dumps(r) + "\n" for r in self.loop.rows)
        self._write(self.dir / "metrics.jsonl", lambda path: atomic_write_text(path, metrics))

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        """Write a run file atomically (rank 0 only); a failure (a full disk) leaves the previous version and says so."""
        if not distributed.is_main():
            return
        try:
            write(path)
        except OSError as err:
            raise WriteError(
                f"could not write {path} ({err.strerror or err}); the previous {path.name} is intact. "
                f"Free disk space, then continue with: qtransfer train --resume {self.dir}"
            ) from err

    def restore(self, last: dict[str, Any]) -> None:
        """Continue from a last.pt written by this run's settings."""
        check_compatible(last, self.classes, self.head)
        self.head.load_state_dict(last["head"])
        if "backbone_buffers" in last:
            load_buffers(self.backbone, last["backbone_buffers"])
        self.loop.load_state_dict(last)
        self.timings = dict(last["timings"])
        self._save_metrics()  # a kill between last.pt and metrics.jsonl leaves the file an epoch short

    # -- results -------------------------------------------------------------------------
    def _held_out(self) -> dict[str, Any] | None:
        """Metrics of the selected epoch's model on the test split, which played no part in training or selection."""
        if "test" not in self.splits:
            return None
        test = evaluate(self.model, self._eval_batches("test"), self.device)
        source = "carved from train (holdout.json)" if self.holdout else "test/ folder"
        return {"split": "test", "source": source, "images": len(test["labels"]),
                **classification_metrics(test["labels"], test["probs"], self.classes)}

    def finish(self, started: float) -> dict[str, Any]:
        """Evaluate the best epoch, draw the figures, write summary.json (total_s counts from `started`)."""
        best = load_checkpoint(self.dir / "best.pt")
        self.head.load_state_dict(best["head"])
        if "backbone_buffers" in best:
            load_buffers(self.backbone, best["backbone_buffers"])
        val = evaluate(self.model, self._eval_batches(), self.device)
        held_out = self._held_out()
        val_paths = [p for p, _ in self.splits["val"].samples]
        matrix = confusion(val["labels"], val["pred"], len(self.classes))
        rows, best_epoch = self.loop.rows, self.loop.best
        figures.plot_curves(rows, best_epoch, self.dir / "curves.png")
        figures.plot_confusion(matrix, self.classes, self.dir / "confusion.png")
        figures.plot_predictions(val_paths, val["labels"], val["pred"], val["probs"], self.classes,
                                 self.dir / "predictions.png", load=load_image)
        self.timings["total_s"] = time.perf_counter() - started
        summary = {
            "best_epoch": best_epoch["epoch"],
            "best_val_acc": best_epoch["val_acc"],
            "best_val_loss": best_epoch["val_loss"],
            "final_val_acc": rows[-1]["val_acc"],
            # which number is which: the epoch is selected on val, so best_val_acc is biased upward
            "accuracy": {"selected_on_val": best_epoch["val_acc"],
                         "held_out": held_out["accuracy"] if held_out else None},
            "held_out": held_out,
            "epochs": len(rows),
            "confusion": matrix.tolist(),
            "classes": self.classes,
            "counts": {name: ds.counts() for name, ds in self.splits.items()},
            "skipped": [{"path": str(p), "reason": r} for ds in self.splits.values() for p, r in ds.skipped],
            "features_computed": {k: f.computed for k, f in (self.features or {}).items()},
            "trainable_parameters": sum(p.numel() for p in self.head.parameters() if p.requires_grad),
            "head_choices": getattr(self.head, "choices", {}),  # hyper-parameters a fitted head chose by inner CV
            "timings": self.timings,
            "threads": self.loop.threads,
            "seed": self.config.seed,
            "device": str(self.device),
            "versions": package_versions(),
        }
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2))
        self._track_results(summary)
        return summary

    def _track_results(self, summary: dict[str, Any]) -> None:
        held = summary["held_out"] or {}
        results = {"best_epoch": summary["best_epoch"], "best_val_acc": summary["best_val_acc"],
                   "best_val_loss": summary["best_val_loss"], "final_val_acc": summary["final_val_acc"],
                   **{f"held_out_{k}": held[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")
                      if held.get(k) is not None}}
        self.tracker.results(results)
        self.tracker.figures(self.dir / name for name in ("curves.png", "confusion.png", "predictions.png"))
        self.tracker.files(self.dir)


def train(config: TrainConfig, resume: Path | None = None, progress: bool = True,
          changes: ResumeChanges | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) a training; returns the run directory and its summary. A resumed run keeps its saved
    settings, with `changes` applied to those that may change (see config.RESUMABLE); `config` is then unused. A
    run killed before its first epoch was saved starts again from epoch 1."""
    started = time.perf_counter()
    with contextlib.ExitStack() as held:
        last = None
        if resume is not None:
            resume = Path(resume)
            check_run_dir(resume)
            if distributed.is_main() and resume.is_dir():  # refuse a run another process is continuing, first
                held.enter_context(run_dir_lock(resume))
                remove_stale_temp_files(resume)
            config = (changes or ResumeChanges()).apply(TrainConfig.load(resume / "config.json"))
            if (resume / "last.pt").exists():
                last = load_checkpoint(resume / "last.pt", resume=True)
                _check_epochs(config, len(last["rows"]), changes)
        config.validate()
        check_installed(config.tensorboard, config.mlflow)
        if distributed.is_distributed():
            _check_distributable(config)
        device = resolve_device(config.device)
        run = Run(config, device, progress)  # loads the backbone and checks the data before any directory is made
        if distributed.is_main():
            run.dir = resume or new_run_dir(config.out, config.name or f"{config.backbone}-{config.head}")
            held.enter_context(run_dir_lock(run.dir))
        run.dir = distributed.broadcast(run.dir)
        if distributed.is_main():
            atomic_write_text(run.dir / "config.json", config.to_json())
            if run.holdout is not None:
                atomic_write_text(run.dir / "holdout.json", json.dumps(run.holdout, indent=2))
        if last is not None:
            run.restore(last)
        run.tracker = held.enter_context(start_tracker(run.dir, config.tensorboard, config.mlflow,
                                                       resume=resume is not None, first_step=len(run.loop.rows) + 1))
        run.tracker.params(asdict(config))
        try:
            run.prepare()
            run.fit()
        except KeyboardInterrupt:
            done = len(run.loop.rows)
            saved = (f"{done} finished epoch(s) are saved in {run.dir / 'last.pt'} and metrics.jsonl" if done else
                     f"no epoch finished; the settings are saved in {run.dir / 'config.json'}")
            raise Interrupted(f"interrupted; {saved}. Continue with: qtransfer train --resume {run.dir}") from None
        summary = distributed.broadcast(run.finish(started) if distributed.is_main() else None)
        return run.dir, summary


def _check_epochs(config: TrainConfig, finished: int, changes: ResumeChanges | None) -> None:
    """Refuse fewer epochs than the resumed run has finished (a head fitted in one call has one, whatever is set)."""
    if config.epochs < finished and not config.fitted_head():
        flag = (changes.flags.get("epochs", "epochs") if changes else "epochs")
        raise InputError(f"{flag} {config.epochs} is fewer than the {finished} epochs the resumed run has finished; "
                         f"pass {flag} {finished} or more to extend it, or drop it to finish the run as it was set")


def _check_distributable(config: TrainConfig) -> None:
    """Refuse settings that one process must run, and a global batch the ranks cannot share evenly."""
    if config.seed_parity:
        raise InputError("--seed-parity runs the tutorial's single-process loop; launch it without torchrun")
    if config.fitted_head():
        raise InputError(f"head {config.head!r} is fitted in one call on all training samples; train it without "
                         f"torchrun (compare, cv and sweep share such heads' runs between ranks)")
    distributed.check_batch(config.batch_size)
