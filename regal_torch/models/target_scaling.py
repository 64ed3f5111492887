"""Target standardisation: a small module that a regressor applies to its output."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TargetScaler(nn.Module):
    r"""Affine map between standardised and original target units, as buffers.

    .. math::
        y = \mu_y + \sigma_y \, z \qquad z = (y - \mu_y) / \sigma_y

    With a ``baseline`` (a Delta target, ``model.baseline``), :math:`\mu_y` is a line in one
    column :math:`v` of the item features: :math:`\mu_y(x) = a + b\,v(x)` (``mean`` is
    :math:`a`, ``slope`` :math:`b`; fitted by
    :meth:`regal_torch.data.datamodule.ActiveDataModule.target_scaler`), so the model learns
    what the line leaves, and every prediction is back in the target's unit; variances are
    unchanged by it.

    A regressor trains on :math:`z` and applies this module to its output to predict
    :math:`y` (like chemprop's output transforms). Handed to a model at construction
    (``target_scaling=TargetScaler(mean, std)``) or filled in later with :meth:`set`; the
    buffers are in the model's ``state_dict``, so a saved model predicts in original units.

    Args:
        mean: :math:`\mu_y` (:math:`a` with a baseline), original units (default 0).
        std: :math:`\sigma_y`, original units, positive (default 1).
        baseline: ``(column, slope)``: the position of :math:`v` among the item features and
            :math:`b`; None (default): no baseline.

    Shapes:
        ``forward``, :meth:`standardise`, :meth:`scale_variance`: any shape ``[..., B]``,
        kept, with ``features`` ``[B, F]`` (the unscaled item features, read only with a
        baseline); ``mean`` and ``std`` are 0-dimensional.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self, mean: float = 0.0, std: float = 1.0, baseline: tuple[int, float] | None = None
    ) -> None:
        super().__init__()
        _check_std(std)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.has_baseline = baseline is not None
        if baseline is not None:  # only then: the state_dict of a plain scaler stays as it was
            self.register_buffer("baseline_column", torch.tensor(int(baseline[0])))
            self.register_buffer("slope", torch.tensor(float(baseline[1])))

    def baseline(self, features: Tensor | None) -> Tensor | float:
        """:math:`b\,v(x)` of each item (0 without a baseline), ``[B]``.

        Raises:
            ValueError: a baseline but no ``features``.
        """
        if not self.has_baseline:
            return 0.0
        if features is None:
            raise ValueError("a target with a baseline needs the items' features")
        return self.slope * features[:, int(self.baseline_column)]

    def set(self, mean: float, std: float) -> None:
        """Set :math:`\\mu_y` and :math:`\\sigma_y` (original units) in place."""
        _check_std(std)
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def forward(self, standardised: Tensor, features: Tensor | None = None) -> Tensor:
        """Standardised values to original units: ``z * std + mean`` (+ the baseline)."""
        y = self.affine(standardised)
        return y + self.baseline(features) if self.has_baseline else y

    def affine(self, standardised: Tensor) -> Tensor:
        """``z * std + mean``, without the baseline (a GP posterior's mean, to which the
        regressor adds :meth:`baseline` of the items)."""
        return standardised * self.std + self.mean

    def standardise(self, y: Tensor, features: Tensor | None = None) -> Tensor:
        """Original units to standardised values: ``(y - mean) / std`` (less the baseline)."""
        if self.has_baseline:
            y = y - self.baseline(features)
        return (y - self.mean) / self.std

    def scale_variance(self, var: Tensor) -> Tensor:
        """A variance or covariance of standardised values in original units: ``var * std**2``."""
        return var * self.std**2

    def extra_repr(self) -> str:
        line = f"mean={self.mean.item():.6g}, std={self.std.item():.6g}"
        if self.has_baseline:
            line += (
                f", baseline=(column {int(self.baseline_column)}, slope {self.slope.item():.6g})"
            )
        return line


def _check_std(std: float) -> None:
    if not std > 0:
        raise ValueError(f"target std must be positive; got {std}")
