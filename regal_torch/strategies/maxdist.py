"""MaxDist (Holzmüller et al., JMLR 2023): farthest-first on a kernel (last layer or gradients)."""

from __future__ import annotations

from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.centers import NearestCenters, farthest_first
from regal_torch.strategies.kernel import KernelStrategy


class MaxDistStrategy(KernelStrategy):
    """MaxDist-TP: pick the pool molecule with the largest kernel distance to its nearest
    labeled or picked molecule, and repeat.

    The kernel distance is ``d(x, x')^2 = k(x, x) + k(x', x') - 2 k(x, x')`` for the linear
    kernel on the features (last layer or gradients, optionally sketched); with an empty
    labeled set the first pick is the molecule of largest ``k(x, x)``, as in bmdal-reg.

    Arguments (``sketch_dim``, ``kernel``, ``half_features``): those of
    :class:`KernelStrategy`.
    """

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        pool, labeled = self.features(prediction, context)
        centers = NearestCenters(pool, labeled)
        return farthest_first(centers, k, int(centers.norms.argmax()))
