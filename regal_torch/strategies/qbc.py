"""Query by committee: the largest disagreement among the model's samples."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy


class QueryByCommitteeStrategy(Strategy):
    """Top-``k`` variance of ``Prediction.samples`` across the committee (ensemble members or
    dropout passes; Burbidge et al. 2007 for regression); ties go to the lower pool row.

    Unlike ``uncertainty`` it ignores any variance the model adds outside the committee
    (e.g. a predicted noise term); for MC-dropout, whose ``var`` is the sample variance,
    the two pick the same molecules.
    """

    requires = ("samples",)

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        disagreement = prediction.samples.var(0)
        return torch.sort(disagreement, descending=True, stable=True).indices[:k]
