"""Lightning loggers of a run (config group ``logger``: csv, tensorboard or none).

Under ``<run>/logs/``: ``rounds/`` holds one entry per finished round (every numeric column of
``history.csv``, with step = number of labels, so curves plot against labels), plus the
config as hyperparameters; ``round_XXX/`` holds round XXX's training curves, written by that
round's Trainer. On a resume ``rounds/`` is rewritten from the checkpointed history and a redone
round overwrites its folder, so the logs match ``history.csv``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

from regal_torch.errors import RegalError


class RunLoggers:
    """Creates the loggers of one run directory from ``cfg.logger`` (null: none).

    Args:
        cfg: The run's config.
        run_dir: The run directory.
        active: False: no loggers (the processes of a multi-process run but the first).
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, active: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        logs = active and cfg.get("logger") is not None
        self.factory = instantiate(cfg.logger) if logs else None
        self.rounds: Logger | None = None

    def _new(self, version: str) -> Logger:
        try:
            return self.factory(save_dir=str(self.run_dir), name="logs", version=version)
        except ModuleNotFoundError as exc:
            raise RegalError(
                f"logger {self.cfg.logger._target_} needs a package that is not installed "
                f"({exc}); install it (logger=tensorboard: pip install tensorboard) "
                "or choose logger=csv or logger=none"
            ) from None

    def for_round(self, r: int) -> Logger | bool:
        """The logger to give round ``r``'s Trainer (False: none)."""
        return self._new(f"round_{r:03d}") if self.factory else False

    def start(self, history: list[dict[str, Any]]) -> None:
        """Open ``logs/rounds`` afresh with the config and the rounds already in ``history``."""
        if not self.factory:
            return
        shutil.rmtree(self.run_dir / "logs" / "rounds", ignore_errors=True)
        self.rounds = self._new("rounds")
        self.rounds.log_hyperparams(OmegaConf.to_container(self.cfg, resolve=True))
        for row in history:
            self.log_round(row)

    def log_round(self, row: dict[str, Any]) -> None:
        """Log one ``history.csv`` row (its finite numbers) at step = its number of labels."""
        if self.rounds is None:
            return
        metrics = {
            key: float(value)
            for key, value in row.items()
            if isinstance(value, (int, float)) and math.isfinite(value) and key != "n_labeled"
        }
        self.rounds.log_metrics(metrics, step=int(row["n_labeled"]))
        self.rounds.save()

    def close(self) -> None:
        if self.rounds is not None:
            self.rounds.finalize("success")
