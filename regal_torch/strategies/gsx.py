"""Greedy sampling on the inputs, GSx (Wu, Lin & Huang, Information Sciences 2019)."""

from __future__ import annotations

from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.centers import NearestCenters, farthest_first
from regal_torch.strategies.features import (
    compute_dtype,
    labeled_embedding,
    row_blocks,
)
from regal_torch.strategies.kernel import FeatureStrategy


class GreedySamplingXStrategy(FeatureStrategy):
    """GSx: pick the pool molecule farthest (Euclidean, in embedding space) from its nearest
    labeled or already picked molecule, and repeat.

    The inputs are the model's embedding (a :class:`Prediction` carries no raw descriptors).
    With an empty labeled set the first pick is the molecule nearest the pool's centroid,
    as in Wu et al.; scikit-activeml instead takes the one with the least summed distance to
    all others, which needs a pool-by-pool matrix.

    Arguments (``half_features``): those of :class:`FeatureStrategy`.
    """

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        embedding = prediction.embedding
        labeled = labeled_embedding(type(self).__name__, prediction, context)
        centroid = embedding.mean(0, dtype=compute_dtype(embedding))
        to_centroid = centroid.new_empty(len(embedding))
        for rows, block in row_blocks(embedding):
            to_centroid[rows] = (block - centroid).square().sum(1)
        first = int(to_centroid.argmin())
        return farthest_first(NearestCenters(embedding, labeled), k, first)
