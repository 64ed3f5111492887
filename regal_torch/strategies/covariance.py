"""Greedy determinant maximisation on the posterior covariance (MaxDet)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.features import (
    KERNELS,
    check_kernel,
    compute_dtype,
    labeled_embedding,
    noise_variance,
    posterior_features,
    row_blocks,
    row_of,
    sq_norms,
)

SOURCES = ("auto", "gp", "samples", "embedding")


class CovarianceStrategy(Strategy):
    r"""Pick the molecule of largest conditional variance, condition the covariance on a noisy
    observation of it, repeat: greedy maximisation of :math:`\det(K_{BB} + \sigma^2 I)`
    over the batch B (MaxDet-P of Holzmüller et al., JMLR 2023).

    Two near-identical uncertain molecules are not both picked: after the first, the second's
    conditional variance is about zero. Only the ``k`` picked covariance columns are ever
    computed, kept as a pivoted Cholesky factor ``[N, k]`` (``O(N k)`` memory, never an
    ``N x N`` matrix: 800 MB for 10^6 molecules and k = 200 in float32); each step costs one
    column plus an ``N x step`` product.

    Covariance sources (``source``):

    - ``gp``: ``Prediction.covariance`` (a GP's posterior; diagonal ``Prediction.var``);
    - ``samples``: the sample covariance of ``Prediction.samples`` (ensemble members or
      dropout passes; rank at most ``S - 1``, the noise term keeps later picks defined);
    - ``embedding``: the linear kernel on the features of ``kernel``: ``ll``,
      ``Prediction.embedding`` (the last layer's Bayesian-linear-regression posterior), or
      ``grad``, ``Prediction.gradients`` (all layers, sketched to ``sketch_dim``), conditioned
      on the labeled set's features;
    - ``auto``: the first of these the prediction has.

    Args:
        source: ``auto``, ``gp``, ``samples`` or ``embedding``.
        noise: Observation noise variance as a fraction of the mean prior variance over the
            pool (> 0); added to each picked molecule's variance when conditioning on it.
        kernel: Features of the ``embedding`` source: ``ll`` or ``grad``.
        sketch_dim: Sketch dimension of the ``grad`` features (``None``: 512).
        half_features: See :class:`regal_torch.strategies.kernel.FeatureStrategy` (for the
            ``embedding`` source; ``auto`` asks for the features too).
    """

    def __init__(
        self,
        source: str = "auto",
        noise: float = 1e-2,
        kernel: str = "ll",
        sketch_dim: int | None = None,
        half_features: bool = False,
    ) -> None:
        if source not in SOURCES:
            raise RegalError(f"strategy.source={source!r} must be one of {', '.join(SOURCES)}")
        if not noise > 0:
            raise RegalError(f"strategy.noise={noise} must be > 0")
        if kernel == "ll" and sketch_dim is not None:
            raise RegalError("strategy.sketch_dim applies to strategy.kernel=grad only")
        self.sketch_dim = check_kernel(kernel, sketch_dim)
        self.source, self.noise, self.kernel = source, noise, kernel
        self.half_features = half_features
        self.field = KERNELS[kernel]
        # The embedding source conditions on the labeled set, so it needs its prediction.
        self.needs_labeled_prediction = source in ("auto", "embedding")
        self.requires = (self.field,) if source == "embedding" else ("var",)

    def request(self) -> PredictionRequest:
        fields = {
            "auto": {"var", "covariance", "samples", self.field},
            "gp": {"var", "covariance"},
            "samples": {"var", "samples"},
            "embedding": {self.field},
        }[self.source]
        sketch_dim = self.sketch_dim if self.kernel == "grad" else PredictionRequest.sketch_dim
        return PredictionRequest(
            frozenset(fields), sketch_dim=sketch_dim, half_features=self.half_features
        )

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        diag, column, sigma2 = self._kernel(prediction, context)
        return greedy_max_det(diag, column, sigma2, k)

    def _resolve(self, prediction: Prediction) -> str:
        if self.source != "auto":
            field = {"gp": "covariance", "samples": "samples"}.get(self.source, self.field)
            if getattr(prediction, field) is None:
                raise RegalError(
                    f"strategy CovarianceStrategy with source={self.source} needs "
                    f"Prediction.{field}, which this model does not provide"
                )
            return self.source
        for source, field in (("gp", "covariance"), ("samples", "samples")):
            if getattr(prediction, field) is not None:
                return source
        if getattr(prediction, self.field) is not None:
            return "embedding"
        raise RegalError(
            "strategy CovarianceStrategy needs Prediction.covariance, Prediction.samples or "
            f"Prediction.{self.field}, and this model provides none of them"
        )

    def _kernel(
        self, prediction: Prediction, context: SelectionContext
    ) -> tuple[Tensor, Callable[[int], Tensor], float]:
        """Prior diagonal ``[N]``, column provider ``s -> [N]`` and noise variance."""
        source = self._resolve(prediction)
        if source == "gp":
            everyone = torch.arange(len(prediction), device=prediction.device)
            diag = prediction.var

            def column(row: int) -> Tensor:
                cols = torch.tensor([row], device=prediction.device)
                return prediction.covariance(everyone, cols)[:, 0].to(diag.dtype)

            return diag, column, self.noise * diag.mean().item()
        if source == "samples":
            samples = prediction.samples
            features = (samples - samples.mean(0)).T / math.sqrt(max(samples.shape[0] - 1, 1))
            sigma2 = noise_variance(features, self.noise)
        else:
            pool = getattr(prediction, self.field)
            labeled = labeled_embedding(type(self).__name__, prediction, context, self.field)
            sigma2 = noise_variance(pool, self.noise)
            features, _ = posterior_features(pool, labeled, sigma2)
        return sq_norms(features), lambda row: _column(features, row), sigma2


def _column(features: Tensor, row: int) -> Tensor:
    """The linear kernel's column of row ``row``, ``features @ features[row]``, in
    :func:`compute_dtype` (by blocks of rows for half-precision features), ``[N]``."""
    center = row_of(features, row)
    column = features.new_empty(features.shape[0], dtype=compute_dtype(features))
    for rows, block in row_blocks(features, split=False):
        column[rows] = block @ center
    return column


def greedy_max_det(diag: Tensor, column: Callable[[int], Tensor], sigma2: float, k: int) -> Tensor:
    """Greedy MaxDet by pivoted Cholesky: pick the largest conditional variance, condition on
    a noisy observation (variance ``sigma2``) of it, repeat.

    Args:
        diag: Prior variances.
        column: ``column(s)``, the prior covariance of every row with row ``s``.
        sigma2: Observation noise variance (> 0).
        k: Number of picks.

    Shapes:
        diag: ``[N]``; column: ``int -> [N]``; returns ``[k]`` rows in pick order.
    """
    variance = diag.clone()
    factor = diag.new_zeros(k, diag.shape[0])  # row j: the j-th Cholesky column, contiguous
    picks = []
    for step in range(k):
        row = int(variance.argmax())
        update = torch.addmv(column(row), factor[:step].T, factor[:step, row], alpha=-1)
        scale = 1.0 / math.sqrt(max(variance[row].item(), 0.0) + sigma2)
        torch.mul(update, scale, out=factor[step])
        variance.addcmul_(factor[step], factor[step], value=-1)
        variance[row] = -math.inf  # picked; stays -inf under the updates
        picks.append(row)
    return torch.tensor(picks, dtype=torch.long)
