"""Fit, evaluate and predict: a head trained on cached backbone features, checkpointed every epoch."""
from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import distributed, parallel, report
from .backbones import create_backbone
from .cache import FeatureCache, MappedFeatures, cached_features, default_cache_dir, extractor_key
from .config import TrainConfig
from .data import ImageFolderDataset, load_image, load_splits
from .heads import create_head
from .metrics import classification_metrics, confusion
from .splits import carve_holdout
from .storage import atomic_torch_save, atomic_write_text


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU; anything else is passed to torch.device. Under torchrun a bare
    CUDA device is this rank's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return distributed.local_device(device) if device.index is None else device


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; every finished epoch is saved."""


def load_checkpoint(path: Path, resume: bool = False) -> dict[str, Any]:
    """A checkpoint written by qtransfer, loaded as plain tensors and lists (never by running pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {path.parent} a qtransfer run directory?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torn zip, foreign pickle, objects refused by weights_only: all "not ours"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        advice = ("start a new run (its best.pt may still be usable with `qtransfer evaluate`)" if resume
                  else "retrain, or use a checkpoint qtransfer wrote")
        raise ValueError(f"{path} is not a readable qtransfer checkpoint: it is damaged, truncated or not ours "
                         f"({reason}); it was not loaded. {advice[0].upper() + advice[1:]}.") from err
    needed = {"head", "classes", "config"} | ({"optimizer", "rows", "best"} if resume else set())
    if not isinstance(state, dict) or not needed <= state.keys():
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a qtransfer checkpoint (it holds {have}; a checkpoint holds "
                         f"{sorted(needed)}); it was not used")
    return state


@dataclass
class FeatureSplit:
    """One split's features (in memory, or memory-mapped from the cache), labels and image files."""

    features: Tensor | MappedFeatures
    labels: Tensor
    paths: list[Path]
    computed: int = 0

    def to_device(self, device: torch.device) -> FeatureSplit:
        """The same split with its features on `device` (labels stay on the CPU)."""
        return FeatureSplit(self.features.to(device), self.labels, self.paths, self.computed)


# ------------------------------------------------------------------------------------- setup


def _splits(config: TrainConfig, backbone: nn.Module) -> tuple[dict[str, ImageFolderDataset], dict | None]:
    """The data's splits, with a held-out test split carved from train when asked; and the carved file list."""
    splits = load_splits(Path(config.data), backbone.transform)
    if "val" not in splits:
        raise ValueError(f"{config.data} has no val/ (or validation/) folder; training selects its epoch on it")
    if config.holdout or config.holdout_list:
        listed = Path(config.holdout_list) if config.holdout_list else None
        return carve_holdout(splits, config.holdout, config.seed, listed)
    return splits, None


def feature_cache(config: TrainConfig, backbone: nn.Module) -> FeatureCache | None:
    """The run's feature cache, or None with --no-cache and in seed-parity mode."""
    # seed-parity runs drift the backbone's BatchNorm statistics: their features are not the cached ones
    if config.no_cache or config.seed_parity:
        return None
    root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    return FeatureCache(root, extractor_key(config.backbone, backbone.weights_id, backbone.transform))


def _feature_splits(
    config: TrainConfig, backbone: nn.Module, splits: dict[str, ImageFolderDataset], device: torch.device,
    mapped: bool = False, batch_size: int = 32,
) -> dict[str, FeatureSplit]:
    cache = feature_cache(config, backbone)
    out = {}
    for name in [n for n in ("train", "val", "test") if n in splits]:
        ds = splits[name]
        paths = [p for p, _ in ds.samples]
        feats, computed = cached_features(
            backbone, ds, paths, cache, device, batch_size=batch_size, num_workers=config.workers(),
            desc=f"{name} features", mapped=mapped,
        )
        out[name] = FeatureSplit(feats, torch.tensor(ds.targets), paths, computed)
    return out


def _batches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches; x of shape (N, views, F) gives each sample one view drawn at random."""
    order = torch.randperm(len(x), generator=generator)
    views = torch.randint(x.shape[1], (len(x),), generator=generator) if x.dim() == 3 else None
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield (x[idx] if views is None else x[idx, views[idx]]), y[idx]


def _evaluate(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, predictions and probabilities of `model` over the batches, without gradients."""
    model.eval()
    losses, preds, probs, labels = [], [], [], []
    with torch.no_grad():
        for x, y in batches:
            logits = model(x.to(device)).float().cpu()
            losses.append(nn.functional.cross_entropy(logits, y, reduction="sum"))
            probs.append(logits.softmax(1))
            preds.append(logits.argmax(1))
            labels.append(y)
    y = torch.cat(labels)
    pred = torch.cat(preds)
    return {
        "loss": float(torch.stack(losses).sum() / len(y)),
        "acc": int((pred == y).sum()) / len(y),
        "pred": pred,
        "probs": torch.cat(probs),
        "labels": y,
    }


def train_steps(
    model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer,
    device: torch.device, epoch: int, hint: str = "",
) -> tuple[float, float]:
    """One epoch of optimizer steps; returns mean training loss and accuracy."""
    total_loss, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(batches, 1):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLoss(
                f"loss is {loss.item()} at epoch {epoch}, step {step}{'; ' + hint if hint else ''}. "
                f"Try a lower --lr (now {lr:g})."
            )
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return total_loss / seen, correct / seen


def set_batchnorm_train(module: nn.Module) -> None:
    """Put only the BatchNorm layers of `module` in train mode (dropout and drop-connect stay off)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()


# ------------------------------------------------------------------------------------- fit


class Run:
    """A training run in its directory: model, optimizer, RNG, metrics, checkpoints."""

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        self.dir = Path(config.out)
        self.backbone = create_backbone(config.backbone, weights=_weights_arg(config.weights))
        self.splits, self.holdout = _splits(config, self.backbone)
        self.classes = self.splits["train"].classes
        torch.manual_seed(config.seed)
        self.head = create_head(config.head, self.backbone.out_features, len(self.classes), **_head_options(config))
        if config.seed_parity:
            self.model: nn.Module = nn.Sequential(self.backbone, self.head)
        else:
            self.model = self.head
        self.model.to(device)
        self.trainer = parallel.wrap(self.model, device)  # the model as trained: under DDP when distributed
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.step_size, gamma=config.gamma)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}
        self.features: dict[str, FeatureSplit] | None = None
        self.timings: dict[str, float] = {}

    # -- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Extract (or read cached) features, unless seed-parity mode runs the backbone every step."""
        if self.config.seed_parity:
            return
        t = time.perf_counter()
        mapped = feature_cache(self.config, self.backbone) is not None  # stream from the cache's shards
        self.features = _feature_splits(self.config, self.backbone, self.splits, self.device, mapped=mapped)
        self.timings["features_s"] = time.perf_counter() - t

    def _train_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        if distributed.is_distributed():
            f = self.features["train"]
            return parallel.rank_batches(f.features, f.labels, self.config.batch_size, self.generator)
        if self.features is not None:
            f = self.features["train"]
            return _batches(f.features, f.labels, self.config.batch_size, self.generator)
        return iter(self._image_loader("train", shuffle=True))

    def _val_batches(self, split: str = "val") -> Iterator[tuple[Tensor, Tensor]]:
        if self.features is not None:
            f = self.features[split]
            return ((f.features[i : i + 256], f.labels[i : i + 256]) for i in range(0, len(f.labels), 256))
        return iter(self._image_loader(split, shuffle=False))

    def _image_loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[split], batch_size=self.config.batch_size, shuffle=shuffle,
            generator=self.generator if shuffle else None, num_workers=self.config.workers(),
        )

    # -- epochs --------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training set, then validation; returns the metrics row."""
        t = time.perf_counter()
        self.head.train()
        if self.config.seed_parity:  # the tutorial's model.train(): only BatchNorm changes behaviour in a ResNet
            set_batchnorm_train(self.backbone)
        hint = f"the best checkpoint so far (epoch {self.best['epoch']}) is kept in {self.dir / 'best.pt'}" \
            if self.best["epoch"] else "no epoch finished, so there is no checkpoint"
        steps = parallel.train_steps if distributed.is_distributed() else train_steps
        train_loss, train_acc = steps(self.trainer, self._train_batches(), self.optimizer, self.device, epoch, hint)
        self.scheduler.step()
        train_s = time.perf_counter() - t
        val = _evaluate(self.model, self._val_batches(), self.device)
        return {
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "val_loss": val["loss"], "val_acc": val["acc"],
            "lr": self.optimizer.param_groups[0]["lr"], "train_s": train_s, "epoch_s": time.perf_counter() - t,
        }

    def fit(self) -> None:
        """Train the remaining epochs, checkpointing after each."""
        bar = tqdm(range(len(self.rows) + 1, self.config.epochs + 1), desc="epochs", unit="epoch",
                   disable=not distributed.is_main())
        t = time.perf_counter()
        for epoch in bar:
            row = self.train_epoch(epoch)
            self.rows.append(row)
            if (row["val_acc"], -row["val_loss"]) > (self.best["val_acc"], -self.best["val_loss"]):
                self.best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
                self._write(self.dir / "best.pt", lambda path: atomic_torch_save(self._model_state(), path))
            self._save_last()
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}", best=f"{self.best['val_acc']:.3f}")
        self.timings["train_s"] = self.timings.get("train_s", 0.0) + time.perf_counter() - t

    # -- checkpoints ---------------------------------------------------------------------
    def _held_out(self) -> dict[str, Any] | None:
        """Metrics of the selected epoch's model on the test split, which played no part in training or selection."""
        if "test" not in self.splits:
            return None
        test = _evaluate(self.model, self._val_batches("test"), self.device)
        source = "carved from train (holdout.json)" if self.holdout else "test/ folder"
        return {"split": "test", "source": source, "images": len(test["labels"]),
                **classification_metrics(test["labels"], test["probs"], self.classes)}

    def _model_state(self) -> dict[str, Any]:
        state = {"head": self.head.state_dict(), "classes": self.classes, "epoch": self.best["epoch"],
                 "config": json.loads(self.config.to_json())}
        if self.config.seed_parity:  # BatchNorm statistics drift in this mode; keep them
            state["backbone_buffers"] = dict(self.backbone.named_buffers())
        return state

    def _save_last(self) -> None:
        state = self._model_state()
        state.update(
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            generator=self.generator.get_state(), torch_rng=torch.get_rng_state(),
            rows=self.rows, best=self.best, timings=self.timings,
        )
        self._write(self.dir / "last.pt", lambda path: atomic_torch_save(state, path))
        metrics = "".join(json.dumps(r) + "\n" for r in self.rows)
        self._write(self.dir / "metrics.jsonl", lambda path: atomic_write_text(path, metrics))

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        """Write a run file atomically (rank 0 only); a failure (a full disk) leaves the previous version and says so."""
        if not distributed.is_main():
            return
        try:
            write(path)
        except OSError as err:
            raise OSError(
                f"could not write {path} ({err.strerror or err}); the previous {path.name} is intact. "
                f"Free disk space, then continue with: qtransfer train --resume {self.dir}"
            ) from err

    def restore(self, last: dict[str, Any]) -> None:
        """Continue from a last.pt written by this run's settings."""
        _check_compatible(last, self.classes, self.head)
        self.head.load_state_dict(last["head"])
        if "backbone_buffers" in last:
            _load_buffers(self.backbone, last["backbone_buffers"])
        self.optimizer.load_state_dict(last["optimizer"])
        self.scheduler.load_state_dict(last["scheduler"])
        self.generator.set_state(last["generator"])
        torch.set_rng_state(last["torch_rng"])
        self.rows, self.best, self.timings = list(last["rows"]), dict(last["best"]), dict(last["timings"])

    # -- results -------------------------------------------------------------------------
    def finish(self, started: float) -> dict[str, Any]:
        """Evaluate the best epoch, draw the figures, write summary.json (total_s counts from `started`)."""
        best = load_checkpoint(self.dir / "best.pt")
        self.head.load_state_dict(best["head"])
        if "backbone_buffers" in best:
            _load_buffers(self.backbone, best["backbone_buffers"])
        val = _evaluate(self.model, self._val_batches(), self.device)
        held_out = self._held_out()
        val_paths = [p for p, _ in self.splits["val"].samples]
        matrix = confusion(val["labels"], val["pred"], len(self.classes))
        report.plot_curves(self.rows, self.dir / "curves.png")
        report.plot_confusion(matrix, self.classes, self.dir / "confusion.png")
        report.plot_predictions(val_paths, val["labels"], val["pred"], val["probs"], self.classes,
                                self.dir / "predictions.png", load=load_image)
        self.timings["total_s"] = time.perf_counter() - started
        summary = {
            "best_epoch": self.best["epoch"],
            "best_val_acc": self.best["val_acc"],
            "best_val_loss": self.best["val_loss"],
            "final_val_acc": self.rows[-1]["val_acc"],
            # which number is which: the epoch is selected on val, so best_val_acc is biased upward
            "accuracy": {"selected_on_val": self.best["val_acc"],
                         "held_out": held_out["accuracy"] if held_out else None},
            "held_out": held_out,
            "epochs": len(self.rows),
            "confusion": matrix.tolist(),
            "classes": self.classes,
            "counts": {name: ds.counts() for name, ds in self.splits.items()},
            "skipped": [{"path": str(p), "reason": r} for ds in self.splits.values() for p, r in ds.skipped],
            "features_computed": {k: f.computed for k, f in (self.features or {}).items()},
            "trainable_parameters": sum(p.numel() for p in self.head.parameters() if p.requires_grad),
            "timings": self.timings,
            "seed": self.config.seed,
            "device": str(self.device),
            "versions": package_versions(),
        }
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2))
        return summary


def _weights_arg(weights: str) -> str | None:
    return None if weights.lower() == "none" else weights


def _head_options(config: TrainConfig) -> dict[str, Any]:
    options = config.head_options()
    if config.seed_parity and config.head == "quantum":
        options["backend"] = _per_sample_backend(config.backend)
    return options


def _per_sample_backend(name: str) -> Any:
    """The circuit run one sample at a time, as in the tutorial."""
    from .backends import PennyLaneBackend, TorchBackend

    if name.startswith("pennylane:"):
        return PennyLaneBackend(name.split(":", 1)[1], per_sample=True)
    return TorchBackend(per_sample=True)


def _load_buffers(module: nn.Module, buffers: dict[str, Tensor]) -> None:
    own = dict(module.named_buffers())
    for name, value in buffers.items():
        own[name].copy_(value)


def _check_compatible(state: dict[str, Any], classes: Sequence[str], head: nn.Module) -> None:
    """Refuse a checkpoint whose classes or head shapes differ from this run's, saying what differs."""
    if list(state["classes"]) != list(classes):
        raise ValueError(f"checkpoint classes {state['classes']} differ from the data's classes {list(classes)}")
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state["head"].items()}
    if ours != theirs:
        diff = {k: (theirs.get(k), ours.get(k)) for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        raise ValueError(f"checkpoint head does not match this head (parameter: (checkpoint, here)): {diff}")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("qtransfer", "torch", "torchvision", "numpy", "pennylane", "efficientnet-lite-pytorch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def new_run_dir(config: TrainConfig) -> Path:
    """runs/<time>-<name>/, made fresh."""
    name = config.name or f"{config.backbone}-{config.head}"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(config.out) / f"{stamp}-{name}"
    for i in range(1, 1000):
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            path = Path(config.out) / f"{stamp}-{name}-{i}"
    raise FileExistsError(f"cannot create a new run directory in {config.out}")


def train(config: TrainConfig, resume: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) a training; returns the run directory and its summary."""
    started = time.perf_counter()
    if resume is not None:
        resume = Path(resume)
        if not (resume / "last.pt").exists():
            raise FileNotFoundError(f"{resume} has no last.pt to resume from; start a new run without --resume")
        config = TrainConfig.load(resume / "config.json")
    config.validate()
    if distributed.is_distributed():
        _check_distributable(config)
    device = resolve_device(config.device)
    run = Run(config, device)  # loads the backbone and checks the data before any directory is made
    run.dir = distributed.broadcast(resume or new_run_dir(config) if distributed.is_main() else None)
    if distributed.is_main():
        atomic_write_text(run.dir / "config.json", config.to_json())
        if run.holdout is not None:
            atomic_write_text(run.dir / "holdout.json", json.dumps(run.holdout, indent=2))
    if resume is not None:
        run.restore(load_checkpoint(resume / "last.pt", resume=True))
    run.prepare()
    try:
        run.fit()
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; {len(run.rows)} finished epoch(s) are saved in {run.dir / 'last.pt'} and metrics.jsonl. "
            f"Continue with: qtransfer train --resume {run.dir}"
        ) from None
    summary = distributed.broadcast(run.finish(started) if distributed.is_main() else None)
    return run.dir, summary


def _check_distributable(config: TrainConfig) -> None:
    """Refuse settings that one process must run, and a global batch the ranks cannot share evenly."""
    if config.seed_parity:
        raise ValueError("--seed-parity runs the tutorial's single-process loop; launch it without torchrun")
    distributed.check_batch(config.batch_size)


# ------------------------------------------------------------------------------------- use a trained run


@dataclass
class TrainedModel:
    """A run's best model, ready to score images: backbone, head, classes, settings."""

    config: TrainConfig
    backbone: nn.Module
    head: nn.Module
    classes: list[str]
    device: torch.device
    run_dir: Path | None = None

    @classmethod
    def load(cls, run_dir: Path, device: str = "auto") -> TrainedModel:
        """The best checkpoint of a run directory."""
        run_dir = Path(run_dir)
        for needed in ("config.json", "best.pt"):
            if not (run_dir / needed).exists():
                raise FileNotFoundError(f"{run_dir} has no {needed}; is it a finished qtransfer run directory?")
        config = TrainConfig.load(run_dir / "config.json")
        best = load_checkpoint(run_dir / "best.pt")
        backbone = create_backbone(config.backbone, weights=_weights_arg(config.weights))
        if "backbone_buffers" in best:
            _load_buffers(backbone, best["backbone_buffers"])
        head = create_head(config.head, backbone.out_features, len(best["classes"]), **config.head_options())
        _check_compatible(best, best["classes"], head)
        head.load_state_dict(best["head"])
        dev = resolve_device(device)
        return cls(config, backbone.to(dev).eval(), head.to(dev).eval(), list(best["classes"]), dev, run_dir)

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities (N, classes) for transformed images (N, 3, H, W)."""
        with torch.no_grad():
            return self.head(self.backbone(images.to(self.device))).float().softmax(1).cpu()

    def predict(self, paths: Sequence[Path]) -> list[dict[str, Any]]:
        """Predicted class and its probability for each image file."""
        images = torch.stack([self.backbone.transform(load_image(Path(p))) for p in paths])
        probs = self.probabilities(images)
        return [
            {"image": str(p), "class": self.classes[int(row.argmax())], "probability": float(row.max()),
             "probabilities": dict(zip(self.classes, map(float, row)))}
            for p, row in zip(paths, probs)
        ]

    def evaluate(self, data: Path | None = None, split: str = "val") -> dict[str, Any]:
        """Loss, accuracy and confusion matrix on a split of the run's data (or of `data`)."""
        split_features = self.features(data, split)
        return {**self.score(split_features), "data": str(split_features.root), "split": split,
                "images": len(split_features.labels), "skipped": split_features.skipped}

    def features(self, data: Path | None = None, split: str = "val") -> EvaluationSplit:
        """Backbone features and labels of a split (from the feature cache when there)."""
        root = Path(data) if data else Path(self.config.data)
        splits = load_splits(root, self.backbone.transform)
        holdout = self.run_dir / "holdout.json" if self.run_dir else None
        if split == "test" and "test" not in splits and data is None and holdout is not None and holdout.exists():
            splits, _ = carve_holdout(splits, 0.0, 0, holdout)  # the files this run held out
        if split not in splits:
            raise ValueError(f"{root} has no {split} split; it has {', '.join(splits)}")
        ds = splits[split]
        if ds.classes != self.classes:
            raise ValueError(f"{root} has classes {ds.classes}; the run was trained on {self.classes}")
        cache = feature_cache(self.config, self.backbone)
        paths = [p for p, _ in ds.samples]
        feats, _ = cached_features(self.backbone, ds, paths, cache, self.device, desc=f"{split} features")
        return EvaluationSplit(feats, torch.tensor(ds.targets), root, [str(p) for p, _ in ds.skipped])

    def score(self, split: EvaluationSplit) -> dict[str, Any]:
        """Loss, accuracy and confusion matrix of the head on a split's features."""
        result = _evaluate(self.head, iter([(split.features, split.labels)]), self.device)
        matrix = confusion(result["labels"], result["pred"], len(self.classes))
        return {"loss": result["loss"], "accuracy": result["acc"], "confusion": matrix.tolist(),
                "classes": self.classes}

    def simulated(self, **settings: Any) -> TrainedModel:
        """The same trained weights on another simulation: backend, shots, noise, device_options, seed."""
        allowed = {"backend", "shots", "noise", "device_options", "seed"}
        if set(settings) - allowed:
            raise ValueError(f"cannot change {sorted(set(settings) - allowed)} of a trained run; only {sorted(allowed)}")
        config = replace(self.config, **{k: v for k, v in settings.items() if v is not None})
        config.validate()
        head = create_head(config.head, self.backbone.out_features, len(self.classes), **config.head_options())
        head.load_state_dict(self.head.state_dict())
        return TrainedModel(config, self.backbone, head.to(self.device).eval(), self.classes, self.device, self.run_dir)


@dataclass
class EvaluationSplit:
    """Features and labels of one split of a dataset, for scoring trained heads."""

    features: Tensor
    labels: Tensor
    root: Path
    skipped: list[str]
