"""Each pool row's nearest center, kept up to date as picks become centers.

The state of the distance-based batch methods (farthest-first, GSx, MaxDist, k-means++,
LCMD): ``O(N)`` memory, ``O(N D)`` work per added center.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regal_torch.strategies.features import nearest_sq_distances, sq_distances_to, sq_norms


class NearestCenters:
    """Squared distance of every pool row to its nearest center, and (if tracked) which
    center that is.

    Centers are the labeled rows (ids ``0..L-1``) followed by the picks, in pick order
    (ids ``L, L+1, ...``). A picked row's distance is set to ``-inf``, so that an argmax
    never picks a row twice, even where several rows coincide.

    Distances are in float32 for features stored in half precision.

    Args:
        features: Pool features.
        labeled: Labeled features, the initial centers.
        track_closest: Keep :attr:`closest` up to date (two more ``O(N)`` operations per
            center); otherwise only :attr:`sq_dist` is kept.

    Shapes:
        features: ``[N, D]``; labeled: ``[L, D]``; :attr:`sq_dist`, :attr:`closest`: ``[N]``.
    """

    def __init__(self, features: Tensor, labeled: Tensor, track_closest: bool = False) -> None:
        self.features = features
        self.norms = sq_norms(features)
        self.sq_dist, self.closest = nearest_sq_distances(features, labeled, self.norms)
        self.track_closest = track_closest
        self.n_centers = labeled.shape[0]

    @property
    def taken(self) -> Tensor:
        """Which rows are picked. Shape ``[N]``, bool."""
        return self.sq_dist == -math.inf

    def add(self, row: int) -> None:
        """Make pool row ``row`` a center."""
        sq = sq_distances_to(self.features, self.norms, row)
        if self.track_closest:
            self.closest.masked_fill_(sq < self.sq_dist, self.n_centers)
        torch.minimum(self.sq_dist, sq, out=self.sq_dist)
        self.sq_dist[row] = -math.inf
        self.n_centers += 1


def farthest_first(centers: NearestCenters, k: int, first: int) -> Tensor:
    """Farthest-first traversal: repeatedly pick the row farthest from every center.

    Args:
        centers: State with the labeled set as centers (modified in place).
        k: Number of picks.
        first: The first pick when there are no centers yet (ignored otherwise).

    Shapes:
        returns ``[k]`` pool rows in pick order.
    """
    picks = []
    for step in range(k):
        row = first if step == 0 and centers.n_centers == 0 else int(centers.sq_dist.argmax())
        centers.add(row)
        picks.append(row)
    return torch.tensor(picks, dtype=torch.long)
