"""What a round trains: its Trainer (the ``trainer`` config plus the run's folder, logger and
bars) and its model (fresh and seeded, or the previous round's weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import Logger

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.loop.seeds import TRAIN, round_seed

__all__ = ["round_model", "round_trainer"]


def round_trainer(
    cfg: DictConfig, run_dir: Path, logger: Logger | bool, show_progress: bool
) -> pl.Trainer:
    """A round's Trainer with ``logger``. ``trainer.enable_progress_bar: null`` (the presets)
    shows Lightning's per-epoch bar exactly when the round bar is shown, one line below it."""
    partial = instantiate(cfg.trainer)
    kwargs: dict[str, Any] = {"default_root_dir": run_dir, "logger": logger}
    epoch_bar = partial.keywords.get("enable_progress_bar")
    kwargs["enable_progress_bar"] = show_progress if epoch_bar is None else epoch_bar
    if kwargs["enable_progress_bar"] and show_progress:
        callbacks = list(partial.keywords.get("callbacks") or [])
        kwargs["callbacks"] = [*callbacks, TQDMProgressBar(process_position=1, leave=False)]
    return partial(**kwargs)


def round_model(
    cfg: DictConfig, dm: ActiveDataModule, r: int, weights: dict[str, torch.Tensor] | None
) -> pl.LightningModule:
    """Round ``r``'s model: fresh (seeded), or the previous round's ``weights`` with
    ``loop.warm_start``; built for the data's inputs (``dm.model_inputs()``: sizes and, on a
    table, the labeled rows' feature scaling) and trained on the labeled set's target
    scaling, either way."""
    pl.seed_everything(round_seed(cfg.seed, r, TRAIN), verbose=False)
    scaling = dm.target_scaler(cfg.model.get("baseline"))
    model = instantiate(cfg.model)(**dm.model_inputs(), target_scaling=scaling)
    if cfg.loop.warm_start and weights is not None:
        model.load_weights(weights)  # keeps this round's scaling
    return model
