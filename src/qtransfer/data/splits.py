"""Honest splits: stratified, seeded held-out sets and cross-validation folds, by index."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from qtransfer.data.images import ImageFolderDataset
from qtransfer.errors import InputError, MissingFileError
from qtransfer.formats import HOLDOUT


def _by_class(labels: Sequence[int], seed: int) -> dict[int, list[int]]:
    """Indices of each class, shuffled by the seed."""
    g = torch.Generator().manual_seed(seed)
    out: dict[int, list[int]] = {}
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        out[c] = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
    return out


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held out): `fraction` of every class held out (at least one per class), the rest kept."""
    if not 0 < fraction < 1:
        raise InputError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    kept, held = [], []
    for c, idx in _by_class(labels, seed).items():
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        if k < 1:
            raise InputError(f"class {c} has {len(idx)} sample(s); holding some out needs at least 2")
        held += idx[:k]
        kept += idx[k:]
    return sorted(kept), sorted(held)


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """`folds` disjoint index lists covering every sample, each with about 1/folds of every class."""
    if folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {folds}")
    small = {c: len(idx) for c, idx in _by_class(labels, seed).items() if len(idx) < folds}
    if small:
        raise InputError(f"{folds} folds need at least {folds} samples of every class; too few: {small}")
    out: list[list[int]] = [[] for _ in range(folds)]
    offset = 0
    for idx in _by_class(labels, seed).values():
        for j, i in enumerate(idx):
            out[(j + offset) % folds].append(i)
        offset += len(idx)  # the next class starts where this one stopped, so fold sizes stay even
    return [sorted(f) for f in out]


def carve_holdout(
    splits: dict[str, ImageFolderDataset], fraction: float, seed: int, listed: Path | None = None
) -> tuple[dict[str, ImageFolderDataset], dict]:
    """Splits with a stratified `fraction` of train moved to a new 'test' split (or the files a holdout.json
    lists); returns them and the record to save as holdout.json (files relative to the train folder)."""
    if "test" in splits:
        raise InputError("the data already has a test/ split; drop --holdout, or remove test/ to carve one")
    train = splits["train"]
    names = [p.relative_to(train.root).as_posix() for p, _ in train.samples]
    if listed is not None:
        record = read_holdout(Path(listed))
        wanted = set(record["files"])
        held = [i for i, n in enumerate(names) if n in wanted]
        missing = wanted - set(names)
        if missing:
            raise InputError(f"{listed} lists {len(missing)} file(s) not in {train.root}, e.g. {sorted(missing)[:3]}")
        kept = [i for i in range(len(names)) if i not in set(held)]
    else:
        kept, held = stratified_holdout(train.targets, fraction, seed)
        record = {"fraction": fraction, "seed": seed}
    record = {**HOLDOUT.stamp(record), "train_root": str(train.root), "files": [names[i] for i in held]}
    return {**splits, "train": train.subset(kept), "test": train.subset(held)}, record


def read_holdout(path: Path) -> dict:
    """A holdout.json a run wrote: its record, with "files" a list of paths relative to the train folder."""
    if not path.is_file():
        raise MissingFileError(f"hold-out list {path} does not exist; pass --holdout-list RUN_DIR/holdout.json of "
                               f"a run that carved a hold-out")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"hold-out list {path} is not JSON ({err}); pass a holdout.json that a run wrote") from None
    HOLDOUT.check(record, path)
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise InputError(f"hold-out list {path} has no \"files\" list of file names; pass a holdout.json that a run "
                         f"wrote")
    return record
