"""The GP prior whose hyperparameters the GP regressors train (model=gp, model=dkl)."""

from __future__ import annotations

import gpytorch
from torch import Tensor

__all__ = ["ExactGPModel"]


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
