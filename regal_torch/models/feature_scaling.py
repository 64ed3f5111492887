"""Input standardisation of a table's features or molecule features: a small module a
regressor applies first."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureScaler(nn.Module):
    r"""Per-feature affine map to standardised inputs, as buffers.

    .. math::
        z_j = (x_j - \mu_j) / \sigma_j

    A regressor on a table (``edge_dim=None``) applies it to every row before its network, so
    training and prediction see the same standardisation; the buffers are in the model's
    ``state_dict``. The loop hands in the one fitted on the labeled rows of the round
    (:meth:`fit`; :meth:`regal_torch.data.datamodule.ActiveDataModule.model_inputs`).

    Args:
        mean: :math:`\mu`, one value per feature.
        std: :math:`\sigma`, one positive value per feature.

    Shapes:
        mean, std: ``[D]``; ``forward``: ``[..., D]`` -> ``[..., D]``.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.shape != std.shape or mean.dim() != 1 or not (std > 0).all():
            raise ValueError(
                f"FeatureScaler needs mean and positive std of shape [D]; got "
                f"{tuple(mean.shape)} and {tuple(std.shape)}"
            )
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())

    @classmethod
    def fit(cls, x: Tensor) -> FeatureScaler:
        """Mean and (population) std of every column of ``x`` (``[L, D]``, L >= 1) over its
        values that are not NaN (a featurizer's failures); a column that does not vary, or
        has no value, gets std 1 (and mean 0 without a value), so it becomes 0 everywhere."""
        known = ~x.isnan()
        count = known.sum(0)
        mean = torch.where(known, x, 0).sum(0) / count.clamp_min(1)
        var = torch.where(known, x - mean, 0).pow(2).sum(0) / count.clamp_min(1)
        std = var.sqrt()
        return cls(mean, torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        """Standardised inputs ``(x - mean) / std``; a NaN (a featurizer's failure) becomes 0,
        the training molecules' mean."""
        z = (x - self.mean) / self.std
        return torch.where(z.isnan(), torch.zeros_like(z), z)

    def extra_repr(self) -> str:
        return f"features={len(self.mean)}"
