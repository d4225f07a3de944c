"""A head by name with its own settings, as compare, sweep and cv take it: 'quantum:depth=2,qubits=8'."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from qtransfer.config import TrainConfig
from qtransfer.errors import InputError
from qtransfer.registry import unknown_name
from qtransfer.settings_schema import Flag, option

# Settings a head spec may change ("quantum:depth=2,qubits=8"): spec key -> TrainConfig field.
SPEC_KEYS = {
    "qubits": "n_qubits", "n_qubits": "n_qubits", "depth": "depth", "template": "template", "embedding": "embedding",
    "backend": "backend", "q_delta": "q_delta", "lr": "lr", "epochs": "epochs", "batch_size": "batch_size",
    "step_size": "step_size", "gamma": "gamma", "pca": "pca", "weight_decay": "weight_decay",
    "entangle": "entangle",
}
BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class HeadSpec:
    """A head by name with settings that differ from the run's: 'quantum', 'quantum:depth=2'."""

    label: str
    head: str
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def quantum(self) -> bool:
        """Whether network B is a quantum circuit."""
        return self.head == "quantum"

    def config(self, base: TrainConfig) -> TrainConfig:
        """The run's settings with this spec's head and settings."""
        return replace(base, head=self.head, **dict(self.settings))


def parse_head(text: str) -> HeadSpec:
    """'name' or 'name:key=value,key=value' (keys: qubits, depth, template, embedding, lr, ...)."""
    name, _, rest = text.strip().partition(":")
    from qtransfer.models.heads import HEADS

    if name not in HEADS:
        raise unknown_name("head", name, HEADS, where=repr(text))
    settings = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in SPEC_KEYS:
            raise InputError(
                f"bad head setting {item!r} in {text!r}: use key=value with key one of {', '.join(sorted(SPEC_KEYS))}"
            )
        target = SPEC_KEYS[key.strip()]
        rule = option(TrainConfig, target).setting.rule
        if isinstance(rule, Flag):
            if value.strip().lower() not in BOOLEANS:
                raise InputError(f"head setting {item!r} in {text!r} needs true or false: write "
                                 f"{key.strip()}=true or {key.strip()}=false")
            settings[target] = BOOLEANS[value.strip().lower()]
            continue
        try:
            settings[target] = rule.parse(value.strip())
        except ValueError:
            raise InputError(f"head setting {item!r} in {text!r} needs a value of type "
                             f"{getattr(rule.parse, '__name__', 'str')}") from None
    return HeadSpec(text.strip(), name, tuple(sorted(settings.items())))
