"""A finished run's best model, used to score and predict: on its own simulation or on another one."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qtransfer.config import TrainConfig
from qtransfer.data.download import data_folder
from qtransfer.data.images import load_image, load_splits
from qtransfer.data.splits import carve_holdout
from qtransfer.errors import InputError, MissingFileError
from qtransfer.features.cache import in_memory
from qtransfer.features.extraction import cached_features
from qtransfer.features.pipeline import feature_cache, load_backbone
from qtransfer.models.backbones import Backbone
from qtransfer.models.heads import build_head
from qtransfer.runtime import check_run_dir, resolve_device
from qtransfer.training.checkpoints import (
    check_compatible,
    load_buffers,
    load_checkpoint,
)
from qtransfer.training.loop import chunks, evaluate
from qtransfer.training.metrics import confusion, describe


@dataclass
class EvaluationSplit:
    """Features and labels of one split of a dataset, for scoring trained heads."""

    features: Tensor
    labels: Tensor
    root: Path
    skipped: list[str]


@dataclass
class TrainedModel:
    """A run's best model, ready to score images: backbone, head, classes, settings."""

    config: TrainConfig
    backbone: Backbone
    head: nn.Module
    classes: list[str]
    device: torch.device
    run_dir: Path | None = None
    progress: bool = True

    @classmethod
    def load(cls, run_dir: Path, device: str = "auto", progress: bool = True) -> TrainedModel:
        """The best checkpoint of a run directory."""
        run_dir = Path(run_dir)
        check_run_dir(run_dir)
        for needed in ("config.json", "best.pt"):
            if not (run_dir / needed).exists():
                raise MissingFileError(f"{run_dir} has no {needed}; is it a finished qtransfer run directory?")
        config = TrainConfig.load(run_dir / "config.json")
        try:
            config.check_ranges()
        except InputError as err:
            raise InputError(f"{run_dir / 'config.json'} was damaged: {err}") from None
        best = load_checkpoint(run_dir / "best.pt")
        backbone = load_backbone(config, progress)
        if "backbone_buffers" in best:
            load_buffers(backbone, best["backbone_buffers"])
        head = build_head(config, backbone.out_features, len(best["classes"]), per_sample=False)
        check_compatible(best, best["classes"], head)
        head.load_state_dict(best["head"])
        dev = resolve_device(device)
        return cls(config, backbone.to(dev).eval(), head.to(dev).eval(), list(best["classes"]), dev, run_dir, progress)

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities (N, classes) for transformed images (N, 3, H, W)."""
        with torch.no_grad():
            logits: Tensor = self.head(self.backbone(images.to(self.device)))
        return logits.float().softmax(1).cpu()

    def predict(self, paths: Sequence[Path]) -> list[dict[str, Any]]:
        """Predicted class and its probability for each image file."""
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise MissingFileError(f"no such image file(s): {', '.join(missing)}")
        images = torch.stack([self.backbone.transform(load_image(Path(p))) for p in paths])
        probs = self.probabilities(images)
        return [
            {"image": str(p), "class": self.classes[int(row.argmax())], "probability": float(row.max()),
             "probabilities": dict(zip(self.classes, map(float, row)))}
            for p, row in zip(paths, probs)
        ]

    def evaluate(self, data: Path | None = None, split: str = "val", repeats: int = 1, seed: int = 0) -> dict[str, Any]:
        """Loss, accuracy and confusion matrix on a split of the run's data (or of `data`); with shots, the
        accuracy over `repeats` repetitions with shot seeds seed, seed + 1, ..."""
        if repeats < 1:
            raise InputError(f"--repeats must be >= 1, got {repeats}")
        features = self.features(data, split)
        results = ([self.simulated(seed=seed + r).score(features) for r in range(repeats)]
                   if self.config.shots else [self.score(features)])
        result = {**results[0], "data": str(features.root), "split": split, "images": len(features.labels),
                  "skipped": features.skipped,
                  "backend": self._backend_name(),
                  "shots": self.config.shots or None, "noise": self.config.noise or None}
        if len(results) > 1:
            result["accuracy_repeats"] = describe([r["accuracy"] for r in results])
        return result

    def _backend_name(self) -> str | None:
        backend = getattr(self.head, "backend", None)  # a quantum head's simulator
        return None if backend is None else str(backend.name)

    def features(self, data: Path | None = None, split: str = "val") -> EvaluationSplit:
        """Backbone features and labels of a split (from the feature cache when there)."""
        root = data_folder(data or self.config.data, self.config.cache_dir, self.progress)
        splits = load_splits(root, self.backbone.transform)
        holdout = self.run_dir / "holdout.json" if self.run_dir else None
        if split == "test" and "test" not in splits and data is None and holdout is not None and holdout.exists():
            splits, _ = carve_holdout(splits, 0.0, 0, holdout)  # the files this run held out
        if split not in splits:
            raise InputError(f"{root} has no {split} split; it has {', '.join(splits)}")
        ds = splits[split]
        if ds.classes != self.classes:
            raise InputError(f"{root} has classes {ds.classes}; the run was trained on {self.classes}")
        cache = feature_cache(self.config, self.backbone)
        paths = [p for p, _ in ds.samples]
        feats, _ = cached_features(self.backbone, ds, paths, cache, self.device, desc=f"{split} features",
                                   progress=self.progress)
        return EvaluationSplit(in_memory(feats), torch.tensor(ds.targets), root, [str(p) for p, _ in ds.skipped])

    def score(self, split: EvaluationSplit) -> dict[str, Any]:
        """Loss, accuracy and confusion matrix of the head on a split's features."""
        result = evaluate(self.head, chunks(split.features, split.labels), self.device)
        matrix = confusion(result["labels"], result["pred"], len(self.classes))
        return {"loss": result["loss"], "accuracy": result["acc"], "confusion": matrix.tolist(),
                "classes": self.classes}

    def simulated(self, **settings: Any) -> TrainedModel:
        """The same trained weights on another simulation: backend, shots, noise, device_options, seed."""
        allowed = {"backend", "shots", "noise", "device_options", "seed"}
        refused = sorted(set(settings) - allowed)
        if refused:
            raise InputError(f"cannot change {refused} of a trained run; only {sorted(allowed)}")
        config = replace(self.config, **{k: v for k, v in settings.items() if v is not None})
        config.validate()
        head = build_head(config, self.backbone.out_features, len(self.classes), per_sample=False)
        head.load_state_dict(self.head.state_dict())
        return replace(self, config=config, head=head.to(self.device).eval())
