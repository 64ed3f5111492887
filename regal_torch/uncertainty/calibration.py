"""Quality of predicted uncertainty, and its recalibration by one variance scale factor.

Raw model variances are usually far too small (a chemprop ensemble on QM9 needed its std
scaled by about 7), so each round the loop fits one factor ``s`` on the validation molecules
(:func:`fit_variance_scale`) and reports the test metrics of both ``var`` and ``s * var``,
next to the NLL of a constant std equal to the validation RMSE: uncertainty whose
recalibrated NLL does not beat that constant carries no information about which molecules are
hard.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor
from torchmetrics.functional import spearman_corrcoef

from regal_torch.models.prediction import Prediction

_LEVELS = 101  # confidence levels 0, 0.01, ..., 1 of the miscalibration area


def gaussian_nll(mean: Tensor, var: Tensor, target: Tensor) -> float:
    r"""Mean Gaussian negative log-likelihood of the targets.

    .. math::
        \mathrm{NLL} = \frac1N \sum_i \tfrac12\log(2\pi\sigma_i^2)
            + \frac{(y_i-\mu_i)^2}{2\sigma_i^2}

    Shapes:
        mean, var, target: ``[N]``.
    """
    return (0.5 * torch.log(2 * math.pi * var) + (target - mean) ** 2 / (2 * var)).mean().item()


def miscalibration_area(mean: Tensor, var: Tensor, target: Tensor) -> float:
    r"""Area between the observed and expected coverage of central Gaussian intervals.

    For each confidence level :math:`p \in \{0, 0.01, \dots, 1\}` the observed coverage is the
    fraction of targets with :math:`|y-\mu| \le \sigma\,\Phi^{-1}(\tfrac{1+p}{2})`; the area
    is :math:`\int_0^1 |\mathrm{observed}(p) - p|\,dp` (trapezoid rule). 0 is perfect
    calibration; 0.5 is the worst (all errors zero, or all infinitely outside the intervals).

    Shapes:
        mean, var, target: ``[N]``.
    """
    levels = torch.linspace(0, 1, _LEVELS, dtype=torch.float64, device=mean.device)
    z = ((target - mean).abs() / var.sqrt()).double()
    normal = torch.distributions.Normal(0.0, 1.0)
    # Phi^{-1}((1+p)/2); p = 1 gives +inf, which covers every finite error.
    bounds = normal.icdf((1 + levels) / 2)
    observed = (z[None, :] <= bounds[:, None]).double().mean(1)
    return torch.trapezoid((observed - levels).abs(), levels).item()


def error_std_spearman(mean: Tensor, var: Tensor, target: Tensor) -> float:
    """Spearman rank correlation between absolute error and predicted std.

    Shapes:
        mean, var, target: ``[N]``.
    """
    return spearman_corrcoef(var.sqrt().double(), (target - mean).abs().double()).item()


def spearman_ceiling(var: Tensor, draws: int = 20) -> float:
    """The Spearman(|error|, std) a perfectly right std of this spread would reach: its mean
    over ``draws`` draws of errors ``e ~ N(0, var)`` (its own generator, seed 0: the same
    number every time, the global random state untouched). The gap between it and
    :func:`error_std_spearman` is what the std misses; errors of nearly one size keep both
    low.

    Shapes:
        var: ``[N]``.
    """
    generator = torch.Generator().manual_seed(0)
    std = var.detach().double().cpu().sqrt()
    values = [
        spearman_corrcoef(
            std, (torch.randn(len(std), generator=generator, dtype=std.dtype) * std).abs()
        ).item()
        for _ in range(draws)
    ]
    return float(sum(values) / len(values))


def fit_variance_scale(mean: Tensor, var: Tensor, target: Tensor) -> float:
    r"""The factor :math:`s` minimising the Gaussian NLL of ``s * var``.

    Closed form: :math:`s = \frac1N \sum_i (y_i-\mu_i)^2/\sigma_i^2`.

    Shapes:
        mean, var, target: ``[N]``.
    """
    return ((target - mean) ** 2 / var).mean().clamp_min(1e-12).item()


def scale_variance(prediction: Prediction, factor: float | Tensor) -> Prediction:
    """The prediction with variance (and covariance, and sample spread) multiplied by
    ``factor``: one number, or one per molecule (``[N]``).

    Samples are stretched about their own mean by ``sqrt(factor)``, so committee methods see
    the same recalibrated spread; a covariance ``C`` becomes ``D C D`` with
    ``D = diag(sqrt(factor))``, still one joint covariance; the mean is unchanged. A
    prediction without a variance (nothing uncertain was asked of the model) is returned as
    it is.
    """
    if prediction.var is None:
        return prediction
    root = factor.sqrt() if isinstance(factor, Tensor) else math.sqrt(factor)
    samples = prediction.samples
    if samples is not None:
        centre = samples.mean(0, keepdim=True)
        samples = centre + root * (samples - centre)
    covariance = prediction.covariance
    return replace(
        prediction,
        var=prediction.var * factor,
        samples=samples,
        covariance=None if covariance is None else _ScaledCovariance(covariance, root),
    )


def calibration_metrics(
    test: Prediction, test_target: Tensor, val: Prediction, val_target: Tensor
) -> dict[str, float]:
    """Uncertainty quality on the test set, raw and recalibrated with a factor fitted on val.

    Returns (keys as in ``history.csv``): ``test_nll``, ``test_nll_recal``,
    ``test_nll_const`` (constant std equal to the val RMSE), ``test_spearman`` and its
    ceiling ``test_spearman_ceiling`` (:func:`spearman_ceiling`), ``test_miscal``,
    ``test_miscal_recal``, ``test_mean_std``, ``test_mean_std_recal``,
    ``var_scale`` (the fitted factor) and ``val_rmse``.

    Shapes:
        test_target: ``[N_test]``; val_target: ``[N_val]``, aligned with the predictions.
    """
    test_target = test_target.to(test.device)
    val_target = val_target.to(val.device)
    scale = fit_variance_scale(val.mean, val.var, val_target)
    val_rmse = (val.mean - val_target).pow(2).mean().sqrt().item()
    mean, var = test.mean, test.var
    const = torch.full_like(var, max(val_rmse, 1e-6) ** 2)
    return {
        "test_nll": gaussian_nll(mean, var, test_target),
        "test_nll_recal": gaussian_nll(mean, var * scale, test_target),
        "test_nll_const": gaussian_nll(mean, const, test_target),
        "test_spearman": error_std_spearman(mean, var, test_target),
        "test_spearman_ceiling": spearman_ceiling(var),
        "test_miscal": miscalibration_area(mean, var, test_target),
        "test_miscal_recal": miscalibration_area(mean, var * scale, test_target),
        "test_mean_std": var.sqrt().mean().item(),
        "test_mean_std_recal": (var * scale).sqrt().mean().item(),
        "var_scale": scale,
        "val_rmse": val_rmse,
    }


class _ScaledCovariance:
    """A covariance provider ``C`` seen as ``D C D``, ``D = diag(root)`` (``root``: one number
    or ``[N]``, one per row of the prediction)."""

    def __init__(self, covariance: Callable[[Tensor, Tensor], Tensor], root: float | Tensor):
        self.covariance, self.root = covariance, root

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        block = self.covariance(rows, cols)
        if not isinstance(self.root, Tensor):
            return self.root**2 * block
        root = self.root.to(block.device, block.dtype)
        return root[rows.to(root.device), None] * block * root[None, cols.to(root.device)]
