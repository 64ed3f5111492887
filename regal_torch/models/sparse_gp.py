"""Variational sparse GP posterior (Titsias 2009) with block covariance, for large labeled sets."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.exact_gp import ExactGPModel, cholesky_with_jitter


class SparsePosterior:
    r"""Optimal variational posterior of an :class:`ExactGPModel` with inducing inputs Z.

    Titsias (AISTATS 2009): for a Gaussian likelihood the best :math:`q(u)` at inducing inputs
    :math:`Z` is known in closed form. With :math:`K_{uu} = k(Z, Z)`,
    :math:`A = K_{uu} + \sigma^{-2} K_{uf} K_{fu}`:

    .. math::
        \mu(x) = c + \sigma^{-2} k(x, Z) A^{-1} K_{uf} (y - c)
        \qquad
        \mathrm{cov}(y_a, y_b) = k(a, b) - k(a, Z) K_{uu}^{-1} k(Z, b)
            + k(a, Z) A^{-1} k(Z, b) + \sigma^2 [a = b]

    It costs O(L M^2) for L training and M inducing points instead of O(L^3), and equals
    :class:`ExactPosterior` when Z is the whole training set. Same interface as
    :class:`ExactPosterior`; solves in float64.

    Args:
        gp: The trained prior (kernel, constant mean, likelihood noise).
        train_x: Training inputs.
        train_y: Standardised training targets.
        inducing: Inducing inputs Z.
        target_mean: Shift back to original units.
        target_std: Scale back to original units.

    Shapes:
        train_x: ``[L, D]``; train_y: ``[L]``; inducing: ``[M, D]``;
        ``mean_var(x)``: ``[N, D]`` -> ``[N]``, ``[N]``;
        ``covariance(a, b, same)``: ``[R, D]``, ``[C, D]``, ``[R, C]`` -> ``[R, C]``.
    """

    def __init__(
        self,
        gp: ExactGPModel,
        train_x: Tensor,
        train_y: Tensor,
        inducing: Tensor,
        target_mean: Tensor,
        target_std: Tensor,
    ) -> None:
        with torch.no_grad():
            self.kernel = gp.covar_module
            self.constant = gp.mean_module.constant.detach()
            self.noise = gp.likelihood.noise.detach().squeeze()
            self.inducing, self.shift, self.scale = inducing.detach(), target_mean, target_std
            k_uu = self._k(self.inducing, self.inducing)
            k_uf = self._k(self.inducing, train_x.detach())
            self.chol_uu = cholesky_with_jitter(k_uu)
            self.chol_a = cholesky_with_jitter(k_uu + k_uf @ k_uf.T / self.noise)
            residual = (train_y.double() - self.constant).unsqueeze(-1)
            self.alpha = torch.cholesky_solve(k_uf @ residual, self.chol_a).squeeze(-1)
            self.alpha = self.alpha / self.noise

    def _k(self, a: Tensor, b: Tensor) -> Tensor:
        return self.kernel(a, b).to_dense().double()

    def _solves(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``k(Z, x)``, ``L_uu^{-1} k(Z, x)`` and ``L_A^{-1} k(Z, x)``, each ``[M, N]``."""
        cross = self._k(self.inducing, x)
        solve = torch.linalg.solve_triangular
        return (
            cross,
            solve(self.chol_uu, cross, upper=False),
            solve(self.chol_a, cross, upper=False),
        )

    @torch.no_grad()
    def mean_var(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance (with noise) at ``x``, original units."""
        cross, q, r = self._solves(x)
        mean = self.constant + cross.T @ self.alpha
        prior = self.kernel(x, x, diag=True).double()
        var = (prior - q.pow(2).sum(0) + r.pow(2).sum(0)).clamp_min(0) + self.noise
        return (mean * self.scale + self.shift).float(), (var * self.scale**2).float()

    @torch.no_grad()
    def whiten(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-input factors of the posterior correction, ``L_uu^{-1} k(Z, x)`` and
        ``L_A^{-1} k(Z, x)``, each ``[M, N]`` (see ``ExactPosterior.whiten``)."""
        _, q, r = self._solves(x)
        return q, r

    @torch.no_grad()
    def covariance(self, a: Tensor, b: Tensor, same: Tensor) -> Tensor:
        """Posterior covariance of the observations at ``a`` and ``b``, original units."""
        return self.covariance_whitened(a, b, self.whiten(a), self.whiten(b), same)

    @torch.no_grad()
    def covariance_whitened(
        self,
        a: Tensor,
        b: Tensor,
        wa: tuple[Tensor, Tensor],
        wb: tuple[Tensor, Tensor],
        same: Tensor,
    ) -> Tensor:
        """:meth:`covariance` given ``wa = whiten(a)`` and ``wb = whiten(b)``."""
        (qa, ra), (qb, rb) = wa, wb
        cov = self._k(a, b) - qa.T @ qb + ra.T @ rb + self.noise * same.double()
        return (cov * self.scale**2).float()
