"""Target standardisation: a small module that a regressor applies to its output."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TargetScaler(nn.Module):
    r"""Affine map between standardised and original target units, as buffers.

    .. math::
        y = \mu_y + \sigma_y \, z \qquad z = (y - \mu_y) / \sigma_y

    A regressor trains on :math:`z` and applies this module to its output to predict
    :math:`y` (like chemprop's output transforms). Handed to a model at construction
    (``target_scaling=TargetScaler(mean, std)``) or filled in later with :meth:`set`; the
    buffers are in the model's ``state_dict``, so a saved model predicts in original units.

    Args:
        mean: :math:`\mu_y`, original units (default 0).
        std: :math:`\sigma_y`, original units, positive (default 1).

    Shapes:
        ``forward``, :meth:`standardise`, :meth:`scale_variance`: any shape, kept; ``mean``
        and ``std`` are 0-dimensional.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        _check_std(std)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def set(self, mean: float, std: float) -> None:
        """Set :math:`\\mu_y` and :math:`\\sigma_y` (original units) in place."""
        _check_std(std)
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def forward(self, standardised: Tensor) -> Tensor:
        """Standardised values to original units: ``z * std + mean``."""
        return standardised * self.std + self.mean

    def standardise(self, y: Tensor) -> Tensor:
        """Original units to standardised values: ``(y - mean) / std``."""
        return (y - self.mean) / self.std

    def scale_variance(self, var: Tensor) -> Tensor:
        """A variance or covariance of standardised values in original units: ``var * std**2``."""
        return var * self.std**2

    def extra_repr(self) -> str:
        return f"mean={self.mean.item():.6g}, std={self.std.item():.6g}"


def _check_std(std: float) -> None:
    if not std > 0:
        raise ValueError(f"target std must be positive; got {std}")
