"""TensorBoard event files in the run directory: scalars per epoch, the settings with the final metrics
(the HParams dashboard), the figures as images; nested runs in sub-folders of tensorboard/."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from qtransfer.tracking.tracker import Tracker

CHILDREN = "tensorboard"  # the folder of a parent run's nested runs


class TensorBoardTracker(Tracker):
    """One run's event files in `log_dir`; `first_step` > 1 continues a resumed run (events of an earlier session
    from that step on are dropped: their epoch is trained again)."""

    def __init__(self, log_dir: Path, first_step: int = 1):
        self.dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.dir), purge_step=first_step if first_step > 1 else None)
        self.settings: dict[str, Any] = {}
        self.step = max(first_step - 1, 0)

    def params(self, values: Mapping[str, Any]) -> None:
        """Kept, to be written with the final metrics."""
        self.settings.update(values)

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """One scalar per metric at this epoch."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.step = step
        self.writer.flush()

    def results(self, values: Mapping[str, float]) -> None:
        """The settings and final metrics in the HParams dashboard, and the metrics as scalars at the last epoch."""
        settings = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in self.settings.items()}
        file_writer = self.writer.file_writer
        if file_writer is None:
            raise RuntimeError(f"the TensorBoard writer of {self.dir} is closed: log results before end()")
        for summary in hparams(settings, dict(values)):
            file_writer.add_summary(summary)
        for key, value in values.items():
            self.writer.add_scalar(key, value, self.step)
        self.writer.flush()

    def figures(self, paths: Iterable[Path]) -> None:
        """Each PNG as the image figures/<name>."""
        for path in paths:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(f"figures/{Path(path).stem}", pixels, self.step, dataformats="HWC")
        self.writer.flush()

    def child(self, name: str) -> Tracker:
        """A nested run in tensorboard/<name>/ (a run of its own in TensorBoard)."""
        return TensorBoardTracker(self.dir / CHILDREN / re.sub(r"[^\w.=+-]", "_", name))

    def end(self, status: str = "FINISHED") -> None:
        """Write and close the event file."""
        self.writer.close()
