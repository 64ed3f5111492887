"""BAIT (Ash et al. 2021) in the form of Holzmüller et al. (JMLR 2023), on a kernel's features."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.features import (
    compute_dtype,
    map_rows,
    noise_variance,
    posterior_features,
    row_blocks,
    row_of,
    sq_norms,
)
from regal_torch.strategies.kernel import KernelStrategy


class BaitStrategy(KernelStrategy):
    r"""BAIT-F-P: greedily pick the molecule whose noisy observation most reduces the total
    posterior variance over pool and labeled set,

    .. math::
        \mathrm{score}(x) = \frac{\sum_{x' \in \mathrm{pool} \cup \mathrm{labeled}}
        k(x', x)^2}{k(x, x) + \sigma^2},

    with ``k`` the kernel's posterior given the labeled set and the picks so far.
    Works in feature space: with posterior features ``psi`` (``[N, D]``), ``k = psi^T C psi``
    for a ``D x D`` matrix ``C`` updated by rank one per pick, and the numerator is
    ``psi^T C M C psi`` with ``M`` the features' second-moment matrix; each step costs one
    ``[N, D] x [D, 2]`` product (``O(N D)`` time, ``O(N)`` memory beyond the features, whose
    posterior transform is one more ``[N, D]``). Forward selection only (no backward step of
    BAIT-FB).

    Args:
        noise: Observation noise variance as a fraction of the mean ``k(x, x)`` over the pool
            (> 0); used for the posterior on the labeled set and for each pick.
        sketch_dim: Sketch dimension of the features (``None``: none for ``ll``, 512 for
            ``grad``).
        kernel: ``ll`` (last-layer features) or ``grad`` (gradients of all layers).
        half_features: See :class:`regal_torch.strategies.kernel.FeatureStrategy`.
    """

    def __init__(
        self,
        noise: float = 1e-2,
        sketch_dim: int | None = None,
        kernel: str = "ll",
        half_features: bool = False,
    ) -> None:
        if not noise > 0:
            raise RegalError(f"strategy.noise={noise} must be > 0")
        super().__init__(sketch_dim, kernel, half_features)
        self.noise = noise

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        pool, labeled = self.features(prediction, context)
        sigma2 = noise_variance(pool, self.noise)
        pool, labeled = posterior_features(pool, labeled, sigma2)
        dtype = compute_dtype(pool)
        moment = second_moment(pool) + second_moment(labeled)
        conditioned = torch.eye(pool.shape[1], dtype=dtype, device=pool.device)
        variance = sq_norms(pool)
        numerator = torch.empty_like(variance)
        for rows, block in row_blocks(pool):
            numerator[rows] = ((block @ moment) * block).sum(1)
        picks = []
        for _ in range(k):
            row = int((numerator / (variance + sigma2)).argmax())
            w = conditioned @ row_of(pool, row)
            gamma = 1.0 / (variance[row].item() + sigma2)
            both = map_rows(pool, torch.stack([w, conditioned @ (moment @ w)], 1), dtype, False)
            cov_with_row, cross = both[:, 0], both[:, 1]
            numerator.addcmul_(cov_with_row, cov_with_row, value=gamma**2 * numerator[row].item())
            numerator.addcmul_(cov_with_row, cross, value=-2 * gamma)
            variance.addcmul_(cov_with_row, cov_with_row, value=-gamma)
            conditioned -= gamma * torch.outer(w, w)
            numerator[row] = -math.inf  # picked; stays -inf under the updates
            picks.append(row)
        return torch.tensor(picks, dtype=torch.long)


def second_moment(features: Tensor) -> Tensor:
    """``features^T features``, in :func:`compute_dtype`: one product for full-precision
    features, a float32 sum over blocks of rows for half-precision ones.

    Shapes:
        features: ``[N, D]`` -> ``[D, D]``.
    """
    if features.dtype == compute_dtype(features):
        return features.T @ features
    total = features.new_zeros(features.shape[1], features.shape[1], dtype=torch.float32)
    for _, block in row_blocks(features):
        total.addmm_(block.T, block)
    return total
