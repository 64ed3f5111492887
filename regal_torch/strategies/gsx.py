"""Greedy sampling on the inputs, GSx (Wu, Lin & Huang, Information Sciences 2019)."""

from __future__ import annotations

from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.centers import NearestCenters, farthest_first
from regal_torch.strategies.features import labeled_embedding


class GreedySamplingXStrategy(Strategy):
    """GSx: pick the pool molecule farthest (Euclidean, in embedding space) from its nearest
    labeled or already picked molecule, and repeat.

    The inputs are the model's embedding (a :class:`Prediction` carries no raw descriptors).
    With an empty labeled set the first pick is the molecule nearest the pool's centroid,
    as in Wu et al.; scikit-activeml instead takes the one with the least summed distance to
    all others, which needs a pool-by-pool matrix.
    """

    requires = ("embedding",)
    needs_labeled_prediction = True

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        embedding = prediction.embedding
        labeled = labeled_embedding(type(self).__name__, prediction, context)
        first = int((embedding - embedding.mean(0)).square().sum(1).argmin())
        return farthest_first(NearestCenters(embedding, labeled), k, first)
