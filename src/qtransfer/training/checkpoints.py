"""Checkpoints written by qtransfer: read back as plain tensors and lists (never by running pickled code), and
checked against the run they are loaded into."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qtransfer.errors import InputError, MissingFileError
from qtransfer.formats import CHECKPOINT
from qtransfer.models.fitted import FittedHead


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
            raise InputError(f"checkpoint head holds {sorted(state['head'])}; this head holds {sorted(head.state_dict())}")
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
