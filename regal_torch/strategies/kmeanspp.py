"""k-means++ seeding (KMeansPP-TP of Holzmüller et al., JMLR 2023) on a kernel."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.centers import NearestCenters
from regal_torch.strategies.kernel import KernelStrategy


class KMeansPPStrategy(KernelStrategy):
    """Draw each pick with probability proportional to its squared kernel distance to the
    nearest labeled or picked molecule (k-means++ seeding, the labeled set as initial centers).

    With an empty labeled set the first pick is uniform. Draws use ``context.generator``
    through an inverse-CDF lookup on the prediction's device.

    Arguments (``sketch_dim``, ``kernel``, ``half_features``): those of
    :class:`KernelStrategy`.
    """

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        pool, labeled = self.features(prediction, context)
        centers = NearestCenters(pool, labeled)
        uniforms = torch.rand(k, generator=context.generator, dtype=torch.float64)
        picks = []
        for u in uniforms.tolist():
            weights = centers.sq_dist.clamp_min(0).double()
            total = weights.sum()
            if not 0 < total < torch.inf:
                # No centers yet (all inf) or only duplicates of centers left: uniform.
                weights = (~centers.taken).double()
            cumulative = weights.cumsum(0)
            target = torch.tensor(u, dtype=torch.float64, device=pool.device) * cumulative[-1]
            row = int(torch.searchsorted(cumulative, target, right=True).clamp_max(len(pool) - 1))
            centers.add(row)
            picks.append(row)
        return torch.tensor(picks, dtype=torch.long)
