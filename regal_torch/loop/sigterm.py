"""SIGTERM during a round (SLURM preemption, ``kill``): how a round stops on it.

Lightning catches SIGTERM inside ``fit`` and ``predict`` and lets them run on (``predict`` to
its end, ``fit`` through ``on_train_end``), so the loop checks after each of them whether any
process received it (:func:`stop_if_terminated`). The round under way is dropped (never
recorded half-trained) and the run exits with an error (:func:`terminated`), not status 0.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from regal_torch.errors import RegalError

__all__ = ["fit", "stop_if_terminated", "terminated"]


def terminated(r: int) -> RegalError:
    """The error that stops a run on SIGTERM during round ``r``."""
    return RegalError(
        f"stopped by SIGTERM during round {r}; the finished rounds are kept: "
        "run the same command again to resume"
    )


def stop_if_terminated(trainer: pl.Trainer, r: int) -> None:
    """Stop round ``r`` if any process of ``trainer`` received SIGTERM."""
    if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
        raise terminated(r)


def fit(
    trainer: pl.Trainer, model: pl.LightningModule, dm: pl.LightningDataModule, r: int,
    validates: bool,
) -> None:  # fmt: skip
    """Train round ``r``'s ``model`` (without a validation loop unless it ``validates``),
    stopped by SIGTERM."""
    try:
        if validates:
            trainer.fit(model, datamodule=dm)
        else:  # no validation step: no val loader to skip (and warn about)
            trainer.fit(model, train_dataloaders=dm.train_dataloader())
    except SIGTERMException:  # Lightning ends fit with this (a SystemExit of status 0)
        raise terminated(r) from None
    stop_if_terminated(trainer, r)  # e.g. during on_train_end, after the last batch
