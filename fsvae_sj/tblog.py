"""TensorBoard events of a training run, beside its CSVs: ``tensorboard --logdir RUN``.

The same numbers as ``log.csv`` (tags ``epoch/<column>``) and ``evals.csv`` (``eval/<column>``),
and each epoch's image grids (``images/sample``, ``images/recon``: the PNGs the run writes), all
at the run's global optimiser step. The events live in the run folder itself, one file per
session. A resumed session purges what an earlier one logged after the state it resumes from
(``purge_step``), so a run that was killed and resumed shows every step once.
"""
from __future__ import annotations

from numbers import Real
from pathlib import Path

# CSV columns that locate a row rather than measure something: the step axis and the epoch index
_INDEX_COLUMNS = ("epoch", "step", "global_step")


class RunLog:
    """One session's TensorBoard writer for the run folder ``run``.

    ``resume_step``: the global optimiser step the session starts from (0 for a new run);
    events an earlier session logged after it are hidden from TensorBoard, since this
    session logs those steps again."""

    def __init__(self, run: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter   # tensorboard's import is slow: only when training
        self.writer = SummaryWriter(str(run), purge_step=resume_step + 1)

    def evaluation(self, row: dict) -> None:
        """An ``evals.csv`` row: its numeric columns as ``eval/<column>`` at ``row["global_step"]``."""
        self._scalars("eval", row)
        self.writer.flush()

    def epoch(self, row: dict, grids: dict[str, Path]) -> None:
        """A ``log.csv`` row (numeric columns as ``epoch/<column>``) and the epoch's image grids
        ``{name: PNG path}`` (as ``images/<name>``), at ``row["global_step"]``."""
        import numpy as np
        from PIL import Image
        self._scalars("epoch", row)
        for name, path in grids.items():
            with Image.open(path) as png:
                pixels = np.asarray(png.convert("RGB"))
            self.writer.add_image(f"images/{name}", pixels, row["global_step"], dataformats="HWC")
        self.writer.flush()

    def _scalars(self, group: str, row: dict) -> None:
        for key, value in row.items():
            if key not in _INDEX_COLUMNS and isinstance(value, Real) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, row["global_step"])

    def close(self) -> None:
        self.writer.close()
