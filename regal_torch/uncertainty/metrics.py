"""Accuracy of a prediction against known targets."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

from regal_torch.models.prediction import Prediction


def regression_metrics(prediction: Prediction, target: Tensor, stage: str) -> dict[str, float]:
    """MAE, RMSE and R^2 of the predictive mean, keyed ``{stage}_{metric}``.

    Shapes:
        target: ``[N]``, aligned with the prediction's rows.
    """
    target = target.to(prediction.device)
    return {
        f"{stage}_mae": mean_absolute_error(prediction.mean, target).item(),
        f"{stage}_rmse": mean_squared_error(prediction.mean, target, squared=False).item(),
        f"{stage}_r2": r2_score(prediction.mean, target).item(),
    }
