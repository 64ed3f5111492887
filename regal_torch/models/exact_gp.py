"""Exact GP posterior: one Cholesky factor, covariance blocks on demand."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.gp_posterior import GPPosterior, cholesky_with_jitter
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.target_scaling import TargetScaler

__all__ = ["ExactPosterior"]


class ExactPosterior(GPPosterior):
    r"""Exact posterior of an :class:`ExactGPModel` (a :class:`GPPosterior`).

    With :math:`K = k(X, X) + \sigma^2 I = L L^\top` and :math:`v(x) = L^{-1} k(X, x)`:

    .. math::
        \mu(x) = c + k(x, X) K^{-1}(y - c) \qquad
        \mathrm{cov}(y_a, y_b) = k(a, b) - v(a)^\top v(b) + \sigma^2 [a = b]

    then scaled to original units. One Cholesky factor at construction, O(L^3); every
    block costs two triangular solves, so a strategy can ask for any rows-by-columns block
    without an N x N matrix. :meth:`whiten` gives ``(v(x),)``.

    Args:
        gp: The trained prior (kernel, constant mean, likelihood noise).
        train_x: Training inputs.
        train_y: Standardised training targets.
        scaling: Map from standardised to original units.

    Shapes:
        train_x: ``[L, D]``; train_y: ``[L]``; ``whiten(x)``: ``[N, D]`` -> ``([L, N],)``;
        the rest as in :class:`GPPosterior`.
    """

    def __init__(
        self, gp: ExactGPModel, train_x: Tensor, train_y: Tensor, scaling: TargetScaler
    ) -> None:
        super().__init__(gp, train_x, train_y, scaling)
        with torch.no_grad():
            self.train_x = train_x.detach()
            gram = self._k(self.train_x, self.train_x)
            gram.diagonal().add_(self.noise)
            self.chol = cholesky_with_jitter(gram)
            residual = (train_y - self.constant).unsqueeze(-1)
            self.alpha = torch.cholesky_solve(residual, self.chol).squeeze(-1)

    def _k(self, a: Tensor, b: Tensor) -> Tensor:
        return self.kernel(a, b).to_dense()

    def _v(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``k(X, x)`` and ``L^{-1} k(X, x)``, both ``[L, N]``."""
        cross = self._k(self.train_x, x)
        return cross, torch.linalg.solve_triangular(self.chol, cross, upper=False)

    @torch.no_grad()
    def mean_var(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cross, v = self._v(x)
        mean = self.constant + cross.T @ self.alpha
        prior = self.kernel(x, x, diag=True)
        var = (prior - v.pow(2).sum(0)).clamp_min(0) + self.noise
        return self.scaling.affine(mean), self.scaling.scale_variance(var)

    @torch.no_grad()
    def whiten(self, x: Tensor) -> tuple[Tensor]:
        """``(L^{-1} k(X, x),)``: ``[L, N]``; computed once for a set of inputs, it makes
        every covariance block of that set cost one ``L``-long dot product per entry instead
        of two triangular solves."""
        return (self._v(x)[1],)

    @torch.no_grad()
    def covariance_whitened(
        self, a: Tensor, b: Tensor, wa: tuple[Tensor], wb: tuple[Tensor], same: Tensor
    ) -> Tensor:
        cov = self._k(a, b) - wa[0].T @ wb[0] + self.noise * same
        return self.scaling.scale_variance(cov)
