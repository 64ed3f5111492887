"""Random sampling: the baseline every strategy must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy


class RandomStrategy(Strategy):
    """``k`` pool molecules uniformly at random, without replacement (no prediction needed)."""

    def _select_rows(
        self, prediction: Prediction | None, k: int, context: SelectionContext
    ) -> Tensor:
        return torch.randperm(len(context.pool), generator=context.generator)[:k]
