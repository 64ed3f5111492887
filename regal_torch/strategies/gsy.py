"""Greedy sampling on the outputs, GSy (Wu, Lin & Huang, Information Sciences 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.features import labeled_targets


class GreedySamplingYStrategy(Strategy):
    """GSy: pick the pool molecule whose predicted mean is farthest from every labeled target
    and from the predicted means of the molecules already picked, and repeat.

    As in scikit-activeml's batch mode, a picked molecule stands in with its predicted mean.
    The nearest labeled target is found by binary search in the sorted targets, so the first
    step costs ``O(N log L)`` and each later one ``O(N)``.
    """

    requires = ("mean",)

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        mean = prediction.mean
        targets = labeled_targets(type(self).__name__, prediction, context).sort().values
        right = torch.searchsorted(targets, mean).clamp_max(len(targets) - 1)
        left = (right - 1).clamp_min(0)
        distance = torch.minimum((mean - targets[left]).abs(), (mean - targets[right]).abs())
        taken = torch.zeros(len(prediction), dtype=torch.bool, device=mean.device)
        picks = []
        for _ in range(k):
            row = int(distance.masked_fill(taken, -math.inf).argmax())
            distance = torch.minimum(distance, (mean - mean[row]).abs())
            taken[row] = True
            picks.append(row)
        return torch.tensor(picks, dtype=torch.long)
