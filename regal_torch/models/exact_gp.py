"""Exact GP: GPyTorch prior for training, Cholesky posterior with block covariance."""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor


class ExactGPModel(gpytorch.models.ExactGP):
    """Constant mean and the given kernel: the prior whose hyperparameters are trained.

    Args:
        kernel: A GPyTorch kernel over the inputs.
        likelihood: A ``GaussianLikelihood`` (learned noise).

    Shapes:
        x: ``[N, D]`` -> ``MultivariateNormal`` over ``[N]``.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, likelihood) -> None:
        super().__init__(None, None, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = kernel

    def forward(self, x: Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class ExactPosterior:
    r"""Posterior of an :class:`ExactGPModel` given training data, in original target units.

    With :math:`K = k(X, X) + \sigma^2 I = L L^\top` and :math:`v(x) = L^{-1} k(X, x)`:

    .. math::
        \mu(x) = c + k(x, X) K^{-1}(y - c) \qquad
        \mathrm{cov}(y_a, y_b) = k(a, b) - v(a)^\top v(b) + \sigma^2 [a = b]

    (covariance of noisy observations, so its diagonal is the predictive variance), then
    scaled to original units with ``target_mean`` and ``target_std``. One Cholesky factor
    at construction; every block costs two triangular solves, so a strategy can ask for any
    rows-by-columns block without an N x N matrix.

    Args:
        gp: The trained prior (kernel, constant mean, likelihood noise).
        train_x: Training inputs.
        train_y: Standardised training targets.
        target_mean: Shift back to original units.
        target_std: Scale back to original units.

    Shapes:
        train_x: ``[L, D]``; train_y: ``[L]``; ``mean_var(x)``: ``[N, D]`` -> ``[N]``, ``[N]``;
        ``covariance(a, b, same)``: ``[R, D]``, ``[C, D]``, ``[R, C]`` -> ``[R, C]``.
    """

    def __init__(
        self,
        gp: ExactGPModel,
        train_x: Tensor,
        train_y: Tensor,
        target_mean: Tensor,
        target_std: Tensor,
    ) -> None:
        with torch.no_grad():
            self.kernel = gp.covar_module
            self.constant = gp.mean_module.constant.detach()
            self.noise = gp.likelihood.noise.detach().squeeze()
            self.train_x, self.shift, self.scale = train_x.detach(), target_mean, target_std
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
        """Predictive mean and variance (with noise) at ``x``, original units."""
        cross, v = self._v(x)
        mean = self.constant + cross.T @ self.alpha
        prior = self.kernel(x, x, diag=True)
        var = (prior - v.pow(2).sum(0)).clamp_min(0) + self.noise
        return mean * self.scale + self.shift, var * self.scale**2

    @torch.no_grad()
    def whiten(self, x: Tensor) -> tuple[Tensor]:
        """The per-input factor of the posterior correction, ``(L^{-1} k(X, x),)``: ``[L, N]``.

        Computed once for a set of inputs, it makes every covariance block of that set cost
        one ``L``-long dot product per entry instead of two triangular solves
        (:meth:`covariance_whitened`).
        """
        return (self._v(x)[1],)

    @torch.no_grad()
    def covariance(self, a: Tensor, b: Tensor, same: Tensor) -> Tensor:
        """Posterior covariance of the observations at ``a`` and ``b``, original units.

        ``same[i, j]`` says that row ``i`` of ``a`` and row ``j`` of ``b`` are the same
        molecule (it gets the noise variance added).
        """
        return self.covariance_whitened(a, b, self.whiten(a), self.whiten(b), same)

    @torch.no_grad()
    def covariance_whitened(
        self, a: Tensor, b: Tensor, wa: tuple[Tensor], wb: tuple[Tensor], same: Tensor
    ) -> Tensor:
        """:meth:`covariance` given ``wa = whiten(a)`` and ``wb = whiten(b)``."""
        cov = self._k(a, b) - wa[0].T @ wb[0] + self.noise * same
        return cov * self.scale**2


def cholesky_with_jitter(matrix: Tensor) -> Tensor:
    """Cholesky factor, adding diagonal jitter (1e-6 to 1e-2 of the mean diagonal) if needed."""
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
