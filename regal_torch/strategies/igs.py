"""Improved greedy sampling, iGS (Wu, Lin & Huang, Information Sciences 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.features import (
    compute_dtype,
    labeled_embedding,
    labeled_targets,
    row_blocks,
    sq_distances_to,
    sq_norms,
)
from regal_torch.strategies.kernel import FeatureStrategy

# Pool rows per block for the distances to the labeled set.
_BLOCK_ROWS = 4096


class ImprovedGreedySamplingStrategy(FeatureStrategy):
    """iGS: pick the pool molecule maximising ``min_m ||x - x_m|| |y - y_m|`` over the labeled
    and already picked molecules ``m``, and repeat.

    ``x`` is the embedding, ``y`` the predicted mean for the pool and the label for the
    labeled set (a picked molecule stands in with its predicted mean, as in
    scikit-activeml). The first step costs ``O(N L D)`` in blocks of rows, each later one
    ``O(N D)``.

    Arguments (``half_features``): those of :class:`FeatureStrategy`.
    """

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        name = type(self).__name__
        x, mean = prediction.embedding, prediction.mean
        targets = labeled_targets(name, prediction, context)
        labeled = labeled_embedding(name, prediction, context).to(compute_dtype(x))
        norms = sq_norms(x)
        distance = torch.empty_like(mean)
        for rows, block in row_blocks(x, _BLOCK_ROWS):
            dx = torch.cdist(block, labeled)
            dy = (mean[rows, None] - targets[None, :]).abs()
            distance[rows] = (dx * dy).min(1).values
        taken = torch.zeros(len(prediction), dtype=torch.bool, device=mean.device)
        picks = []
        for _ in range(k):
            row = int(distance.masked_fill(taken, -math.inf).argmax())
            product = sq_distances_to(x, norms, row).sqrt() * (mean - mean[row]).abs()
            distance = torch.minimum(distance, product)
            taken[row] = True
            picks.append(row)
        return torch.tensor(picks, dtype=torch.long)
