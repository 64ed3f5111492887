"""Variational sparse GP posterior (Titsias 2009) with block covariance, for large labeled sets."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.models.gp_posterior import GPPosterior, cholesky_with_jitter
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.target_scaling import TargetScaler


class SparsePosterior(GPPosterior):
    r"""Optimal variational posterior of an :class:`ExactGPModel` with inducing inputs Z
    (a :class:`GPPosterior`).

    Titsias (AISTATS 2009): for a Gaussian likelihood the best :math:`q(u)` at inducing inputs
    :math:`Z` is known in closed form. With :math:`K_{uu} = k(Z, Z)`,
    :math:`A = K_{uu} + \sigma^{-2} K_{uf} K_{fu}`:

    .. math::
        \mu(x) = c + \sigma^{-2} k(x, Z) A^{-1} K_{uf} (y - c)
        \qquad
        \mathrm{cov}(y_a, y_b) = k(a, b) - k(a, Z) K_{uu}^{-1} k(Z, b)
            + k(a, Z) A^{-1} k(Z, b) + \sigma^2 [a = b]

    It costs O(L M^2) for L training and M inducing points instead of O(L^3), and equals
    :class:`regal_torch.models.exact_gp.ExactPosterior` when Z is the whole training set.
    Solves in float64; outputs float32.

    Args:
        gp: The trained prior (kernel, constant mean, likelihood noise).
        train_x: Training inputs.
        train_y: Standardised training targets.
        scaling: Map from standardised to original units.
        inducing: Inducing inputs Z (default: all of ``train_x``).

    Shapes:
        train_x: ``[L, D]``; train_y: ``[L]``; inducing: ``[M, D]``;
        ``whiten(x)``: ``[N, D]`` -> ``([M, N], [M, N])``; the rest as in
        :class:`GPPosterior`.
    """

    def __init__(
        self,
        gp: ExactGPModel,
        train_x: Tensor,
        train_y: Tensor,
        scaling: TargetScaler,
        inducing: Tensor | None = None,
    ) -> None:
        super().__init__(gp, train_x, train_y, scaling)
        with torch.no_grad():
            self.inducing = (train_x if inducing is None else inducing).detach()
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
        cross, q, r = self._solves(x)
        mean = self.constant + cross.T @ self.alpha
        prior = self.kernel(x, x, diag=True).double()
        var = (prior - q.pow(2).sum(0) + r.pow(2).sum(0)).clamp_min(0) + self.noise
        return self.scaling.affine(mean).float(), self.scaling.scale_variance(var).float()

    @torch.no_grad()
    def whiten(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``L_uu^{-1} k(Z, x)`` and ``L_A^{-1} k(Z, x)``, each ``[M, N]``."""
        _, q, r = self._solves(x)
        return q, r

    @torch.no_grad()
    def covariance_whitened(
        self,
        a: Tensor,
        b: Tensor,
        wa: tuple[Tensor, Tensor],
        wb: tuple[Tensor, Tensor],
        same: Tensor,
    ) -> Tensor:
        (qa, ra), (qb, rb) = wa, wb
        cov = self._k(a, b) - qa.T @ qb + ra.T @ rb + self.noise * same.double()
        return self.scaling.scale_variance(cov).float()
