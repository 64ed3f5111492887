"""Uncertainty sampling: the k largest predictive variances."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy


class UncertaintyStrategy(Strategy):
    """Top-``k`` predictive variance (MaxDiag); ties go to the lower pool row.

    Ignores the correlation between picks, so a batch can hold near-duplicates; the batch
    methods that account for it usually do better.
    """

    requires = ("var",)

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        return torch.sort(prediction.var, descending=True, stable=True).indices[:k]
