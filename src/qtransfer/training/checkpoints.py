"""Checkpoints written by qtransfer: what each epoch of a run leaves in its directory (best.pt, last.pt,
metrics.jsonl), read back as plain tensors and lists (never by running pickled code), and checked against the run
they are loaded into."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qtransfer import distributed
from qtransfer.errors import InputError, MissingFileError, WriteError
from qtransfer.formats import CHECKPOINT
from qtransfer.models.fitted import FittedHead
from qtransfer.storage import atomic_torch_save, atomic_write_text


class RunCheckpoints:
    """The files a run's epochs leave in its directory, each written atomically by rank 0: best.pt (the selected
    epoch's weights), last.pt (the last epoch's, with what continuing needs) and metrics.jsonl (one row per epoch)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)

    def save_best(self, state: dict[str, Any]) -> None:
        """The weights of the epoch selected so far."""
        self._write(self.dir / "best.pt", lambda path: atomic_torch_save(state, path))

    def save_last(self, state: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
        """The last epoch's checkpoint, then the rows up to it."""
        self._write(self.dir / "last.pt", lambda path: atomic_torch_save(state, path))
        self.save_metrics(rows)

    def save_metrics(self, rows: Sequence[dict[str, Any]]) -> None:
        """metrics.jsonl: one row per finished epoch."""
        metrics = "".join(json.dumps(r) + "\n" for r in rows)
        self._write(self.dir / "metrics.jsonl", lambda path: atomic_write_text(path, metrics))

    def best(self) -> dict[str, Any]:
        """best.pt, read back."""
        return load_checkpoint(self.dir / "best.pt")

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        """Write a run file (rank 0 only); a failure (a full disk) leaves the previous version and says so."""
        if not distributed.is_main():
            return
        try:
            write(path)
        except OSError as err:
            raise WriteError(
                f"could not write {path} ({err.strerror or err}); the previous {path.name} is intact. "
                f"Free disk space, then continue with: qtransfer train --resume {self.dir}"
            ) from err


def load_checkpoint(path: Path, resume: bool = False) -> dict[str, Any]:
    """A checkpoint written by qtransfer (with `resume`: one that holds what continuing a run needs)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; is {path.parent} a qtransfer run directory?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torn zip, foreign pickle, objects refused by weights_only: all "not ours"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        advice = ("start a new run (its best.pt may still be usable with `qtransfer evaluate`)" if resume
                  else "retrain, or use a checkpoint qtransfer wrote")
        raise InputError(f"{path} is not a readable qtransfer checkpoint: it is damaged, truncated or not ours "
                         f"({reason}); it was not loaded. {advice[0].upper() + advice[1:]}.") from err
    if isinstance(state, dict):
        CHECKPOINT.check(state, path)  # before its keys: a newer format may hold others
    needed = {"head", "classes", "config"} | ({"optimizer", "rows", "best"} if resume else set())
    if not isinstance(state, dict) or not needed <= state.keys():
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path} is not a qtransfer checkpoint (it holds {have}; a checkpoint holds "
                         f"{sorted(needed)}); it was not used")
    return state


def check_compatible(state: dict[str, Any], classes: Sequence[str], head: nn.Module) -> None:
    """Refuse a checkpoint whose classes or head shapes differ from this run's, saying what differs (a fitted
    head's shapes come from its data, so only its tensors' names are compared)."""
    if list(state["classes"]) != list(classes):
        raise InputError(f"checkpoint classes {state['classes']} differ from the data's classes {list(classes)}")
    if isinstance(head, FittedHead):
        if set(head.state_dict()) != set(state["head"]):
            raise InputError(f"checkpoint head holds {sorted(state['head'])}; "
                             f"this head holds {sorted(head.state_dict())}")
        return
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state["head"].items()}
    if ours != theirs:
        diff = {k: (theirs.get(k), ours.get(k)) for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        raise InputError(f"checkpoint head does not match this head (parameter: (checkpoint, here)): {diff}")


def load_buffers(module: nn.Module, buffers: dict[str, Tensor]) -> None:
    """Copy saved buffers (BatchNorm statistics) into `module`."""
    own = dict(module.named_buffers())
    for name, value in buffers.items():
        own[name].copy_(value)
