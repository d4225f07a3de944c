"""Where a circuit's gate parameters come from: inputs (per sample), trainable weights, or constants."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qtransfer.quantum.circuits import Circuit


class ParamIndex:
    """Where each gate parameter lives in the source vector [inputs | weights | constants]."""

    def __init__(self, circuit: Circuit):
        self.n_inputs, self.n_weights = circuit.n_inputs, circuit.n_weights
        consts: list[float] = []
        self.slots: dict[tuple[int, int], int] = {}
        for gi, g in enumerate(circuit.gates):
            for pi, p in enumerate(g.params):
                if p.source == "input":
                    self.slots[gi, pi] = p.index
                elif p.source == "weight":
                    self.slots[gi, pi] = self.n_inputs + p.index
                else:
                    self.slots[gi, pi] = self.n_inputs + self.n_weights + len(consts)
                    consts.append(p.value)
        self.consts = np.array(consts, dtype=float)
        self.sizes = {
            "input": self.n_inputs,
            "weight": self.n_weights,
            "wc": self.n_weights + len(consts),
            "all": self.n_inputs + self.n_weights + len(consts),
        }

    def locate(self, slots: np.ndarray) -> tuple[str, np.ndarray]:
        """The smallest source holding all `slots`, and the slots' positions in it."""
        n_in, n_w = self.n_inputs, self.n_weights
        if slots.max() < n_in:
            return "input", slots
        if slots.min() >= n_in:
            return ("weight" if slots.max() < n_in + n_w else "wc"), slots - n_in
        return "all", slots


class Sources:
    """The parameter sources of one call, each built on first use: (batch, size) or (size,); with a model axis,
    inputs (models, batch, size) and weights (models, 1, size), so that weights broadcast over each model's rows."""

    def __init__(self, inputs: Tensor | None, weights: Tensor, consts: Tensor):
        self.inputs, self.weights, self.consts = inputs, weights, consts
        self.made: dict[str, Tensor] = {"weight": weights} if inputs is None else {"input": inputs, "weight": weights}

    def __getitem__(self, name: str) -> Tensor:
        made = self.made
        if name not in made and "wc" not in made:
            weights, inputs = self.weights, self.inputs
            if weights.dim() == 1:
                wc = made["wc"] = torch.cat([weights, self.consts])
                if inputs is not None:
                    made["all"] = torch.cat([inputs, wc.expand(inputs.shape[0], -1)], 1)
            else:
                wc = made["wc"] = torch.cat([weights, self.consts.expand(*weights.shape[:-1], -1)], -1)
                if inputs is not None:
                    made["all"] = torch.cat([inputs, wc.expand(*inputs.shape[:-1], -1)], -1)
        if name not in made:
            raise KeyError(f"this call has no {name!r} parameters (no inputs)")
        return made[name]
