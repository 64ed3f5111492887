"""Farthest-first traversal from the labeled set in embedding space."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.centers import NearestCenters, farthest_first
from regal_torch.strategies.features import labeled_embedding
from regal_torch.strategies.kernel import FeatureStrategy


class FarthestFirstStrategy(FeatureStrategy):
    """Farthest-first traversal (Gonzalez 1985) in the model's embedding space.

    Each pick is the pool molecule whose Euclidean distance to the nearest labeled or already
    picked molecule is largest (a greedy k-center cover). With an empty labeled set the first
    pick is uniform at random. Once something is labeled it is the same rule as ``gsx``
    (which differs only in its first pick on an empty labeled set) and as ``maxdist`` without
    a sketch.

    Arguments (``half_features``): those of :class:`FeatureStrategy`.
    """

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        labeled = labeled_embedding(type(self).__name__, prediction, context)
        first = int(torch.randint(len(prediction), (1,), generator=context.generator))
        return farthest_first(NearestCenters(prediction.embedding, labeled), k, first)
