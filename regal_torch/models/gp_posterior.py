"""What every GP posterior offers: mean and variance, and covariance blocks on demand."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.target_scaling import TargetScaler


class GPPosterior(ABC):
    r"""Posterior of a trained :class:`regal_torch.models.gp_prior.ExactGPModel` given its
    training data, in original target units.

    The prior is :math:`y = c + f(x) + \varepsilon`, :math:`f \sim \mathcal{GP}(0, k)`,
    :math:`\varepsilon \sim N(0, \sigma^2)`, on standardised targets; every output is
    mapped back with ``scaling`` (means by ``scaling.affine(.)``: a Delta target's baseline
    is added by the regressor, which sees the items' features; variances and covariances by
    ``scaling.scale_variance(.)``). Implementations: the exact Cholesky posterior
    (:class:`regal_torch.models.exact_gp.ExactPosterior`) and the variational one at
    inducing inputs (:class:`regal_torch.models.sparse_gp.SparsePosterior`). All are built
    as ``cls(gp, train_x, train_y, scaling)`` and conditioned at construction.

    Covariances are of noisy observations, so their diagonal is the predictive variance.
    :meth:`whiten` computes, once per set of inputs, the factors that make every later
    covariance block of that set cheap (:meth:`covariance_whitened`); a strategy asking for
    many blocks of one pool pays the solves once.

    Args:
        gp: The trained prior (kernel ``covar_module``, constant mean, likelihood noise).
        train_x: Training inputs.
        train_y: Standardised training targets.
        scaling: Map from standardised to original units.

    Shapes:
        train_x: ``[L, D]``; train_y: ``[L]``;
        ``mean_var(x)``: ``[N, D]`` -> mean ``[N]``, var ``[N]``;
        ``whiten(x)``: ``[N, D]`` -> a tuple of ``[K, N]`` factors (K: training or
        inducing inputs);
        ``covariance(a, b, same)``: ``[R, D]``, ``[C, D]``, ``[R, C]`` -> ``[R, C]``;
        ``covariance_whitened(a, b, whiten(a), whiten(b), same)``: the same.
    """

    def __init__(
        self, gp: ExactGPModel, train_x: Tensor, train_y: Tensor, scaling: TargetScaler
    ) -> None:
        with torch.no_grad():
            self.kernel = gp.covar_module
            self.constant = gp.mean_module.constant.detach()
            self.noise = gp.likelihood.noise.detach().squeeze()
            self.scaling = scaling
            # what it was conditioned on, for a saved model (regal_torch.outputs.model_file)
            self.train_inputs, self.train_targets = train_x.detach(), train_y.detach()

    @abstractmethod
    def mean_var(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance (with noise) at ``x``, original units."""

    @abstractmethod
    def whiten(self, x: Tensor) -> tuple[Tensor, ...]:
        """Per-input factors of the posterior correction at ``x`` (see the class)."""

    @abstractmethod
    def covariance_whitened(
        self,
        a: Tensor,
        b: Tensor,
        wa: tuple[Tensor, ...],
        wb: tuple[Tensor, ...],
        same: Tensor,
    ) -> Tensor:
        """:meth:`covariance` given ``wa = whiten(a)`` and ``wb = whiten(b)``."""

    @torch.no_grad()
    def covariance(self, a: Tensor, b: Tensor, same: Tensor) -> Tensor:
        """Posterior covariance of the observations at ``a`` and ``b``, original units.

        ``same[i, j]`` says that row ``i`` of ``a`` and row ``j`` of ``b`` are the same
        molecule (it gets the noise variance added).
        """
        return self.covariance_whitened(a, b, self.whiten(a), self.whiten(b), same)


def cholesky_with_jitter(matrix: Tensor) -> Tensor:
    """Cholesky factor, adding diagonal jitter (1e-6 to 1e-2 of the mean diagonal) if needed.

    Shapes:
        matrix: ``[K, K]`` -> lower triangular ``[K, K]``.
    """
    chol, info = torch.linalg.cholesky_ex(matrix)
    jitter = 1e-6 * matrix.diagonal().mean()
    while info.item() != 0:
        if jitter > 1e-2 * matrix.diagonal().mean():
            raise RuntimeError("GP kernel matrix is not positive definite, even with jitter")
        chol, info = torch.linalg.cholesky_ex(
            matrix + jitter * torch.eye(len(matrix), device=matrix.device, dtype=matrix.dtype)
        )
        jitter *= 10
    return chol
