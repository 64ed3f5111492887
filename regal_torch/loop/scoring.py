"""A round's scores: its model's predictions of the test and validation molecules turned into
the metrics of ``history.csv`` (accuracy, raw and recalibrated uncertainty, the local
variance, conformal intervals on the std the run uses) and the round's local calibration.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.loop.sigterm import stop_if_terminated
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.uncertainty.calibration import calibration_metrics
from regal_torch.uncertainty.conformal import interval_metrics
from regal_torch.uncertainty.local_calibration import (
    NeighbourCalibration,
    local_calibration_metrics,
    neighbour_count,
)
from regal_torch.uncertainty.metrics import regression_metrics

__all__ = ["predict_positions", "score_round"]


def predict_positions(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    dm: ActiveDataModule,
    positions: torch.Tensor,
    r: int,
    request: PredictionRequest | None = None,
) -> Prediction:
    """Round ``r``'s prediction over dataset ``positions`` ``[k]``, stopped by a SIGTERM
    received during it by any process."""
    prediction = predict(trainer, model, dm.loader(positions), request)
    stop_if_terminated(trainer, r)
    return prediction


def score_round(
    cfg: DictConfig, dm: ActiveDataModule, trainer: pl.Trainer, model: pl.LightningModule, r: int
) -> tuple[dict[str, float | str], NeighbourCalibration | None]:
    """Test metrics of round ``r``'s model, and the local calibration
    (``loop.local_neighbours``; None without it)."""
    truth, test_set, val_set = dm.truth, dm.test, dm.val
    test = predict_positions(trainer, model, dm, test_set, r)
    val = predict_positions(trainer, model, dm, val_set, r)
    metrics = regression_metrics(test, truth[test_set], "test")
    metrics.update(calibration_metrics(test, truth[test_set], val, truth[val_set]))
    local = None
    k = neighbour_count(cfg.loop.get("local_neighbours"), len(val_set))
    if k is not None:
        local = NeighbourCalibration(val, truth[val_set], k)
        metrics.update(local_calibration_metrics(local, test, truth[test_set]))
        metrics["std_used"] = local.describe()  # chosen on the validation molecules
        test_var, val_var = local.variance(test), local.validation_variance()
    else:
        test_var, val_var = test.var * metrics["var_scale"], val.var * metrics["var_scale"]
    metrics.update(
        interval_metrics(
            test.mean, test_var.sqrt(), truth[test_set], val.mean, val_var.sqrt(),
            truth[val_set], cfg.predict.interval,
        )
    )  # fmt: skip
    return metrics, local
