"""Target standardisation shared by the regressors."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class TargetScaling(pl.LightningModule):
    """A LightningModule that trains on standardised targets.

    Holds buffers ``target_mean`` and ``target_std`` (original units), set from the
    datamodule's labeled set at fit start (``datamodule.target_scaling()``), or by
    :meth:`set_target_scaling` when training without such a datamodule.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_target_scaling(self, mean: float, std: float) -> None:
        """Set the standardisation of the target (original units)."""
        if not std > 0:
            raise ValueError(f"target std must be positive; got {std}")
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std))

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "target_scaling"):
            self.set_target_scaling(*datamodule.target_scaling())
