"""The report of a whole sweep, written when the sweep ends (``experiment=compare``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regal_torch.errors import RegalError
from regal_torch.report.cli import report


class SweepReport(Callback):
    """Hydra callback: when a ``--multirun`` sweep ends, write the report of every run in its
    folder (:func:`regal_torch.report.cli.report`: learning curves, ``summary.csv`` and
    ``summary.md`` with the labels saved against random sampling) into ``SWEEP_DIR/report``
    and print the summary and where it is.

    Registered under ``hydra.callbacks`` (``configs/experiment/compare.yaml``). Hydra calls it
    in the process that launched the sweep, after every job has returned; a re-run of a
    finished sweep resumes nothing and writes the report again. A report that cannot be
    made (no finished run) is one ``error:`` line on stderr; the runs are kept.

    Args:
        folder: Name of the report's folder inside the sweep folder (default ``report``).
    """

    def __init__(self, folder: str = "report") -> None:
        self.folder = folder

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            report([sweep], sweep / self.folder)
        except RegalError as exc:
            print(f"error: no report of {sweep}: {exc}", file=sys.stderr, flush=True)
