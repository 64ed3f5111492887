"""Calibration metrics on hand-made cases with known answers, and variance recalibration."""

import math

import pytest
import torch

from regal_torch.models.prediction import Prediction
from regal_torch.uncertainty.calibration import (
    calibration_metrics,
    error_std_spearman,
    fit_variance_scale,
    gaussian_nll,
    miscalibration_area,
    scale_variance,
    spearman_ceiling,
)


def test_gaussian_nll_of_a_known_case():
    mean, var, y = torch.zeros(2), torch.tensor([1.0, 4.0]), torch.tensor([1.0, 2.0])
    # 0.5 log(2 pi) + 0.5 and 0.5 log(8 pi) + 0.5
    want = 0.5 * (0.5 * math.log(2 * math.pi) + 0.5 + 0.5 * math.log(8 * math.pi) + 0.5)
    assert gaussian_nll(mean, var, y) == pytest.approx(want)


def test_miscalibration_area_extremes_and_a_calibrated_sample():
    n = 200_000
    mean, var = torch.zeros(n), torch.ones(n)
    assert miscalibration_area(mean, var, torch.zeros(n)) == pytest.approx(0.5, abs=1e-3)
    assert miscalibration_area(mean, var, torch.full((n,), 1e6)) == pytest.approx(0.5, abs=0.01)
    y = torch.randn(n, generator=torch.Generator().manual_seed(0))
    assert miscalibration_area(mean, var, y) < 0.005
    assert miscalibration_area(mean, 0.01 * var, y) > 0.3  # overconfident


def test_spearman_of_perfect_and_reversed_rankings():
    mean, y = torch.zeros(5), torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5])
    assert error_std_spearman(mean, y**2, y) == pytest.approx(1.0)
    assert error_std_spearman(mean, 1 / y**2, y) == pytest.approx(-1.0)


def test_the_spearman_ceiling_grows_with_the_spread_of_the_std_and_is_reproducible():
    g = torch.Generator().manual_seed(1)
    wide = torch.exp(2 * torch.randn(5000, generator=g))  # std spread over orders of magnitude
    narrow = 1 + 0.01 * torch.rand(5000, generator=g)
    state = torch.random.get_rng_state()
    assert spearman_ceiling(wide) > 0.6
    assert abs(spearman_ceiling(narrow)) < 0.05
    assert spearman_ceiling(wide) == spearman_ceiling(wide)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    # errors drawn from the std itself reach the ceiling, within the draws' spread
    errors = torch.randn(5000, generator=g) * wide.sqrt()
    assert error_std_spearman(torch.zeros(5000), wide, errors) == pytest.approx(
        spearman_ceiling(wide), abs=0.03
    )


def test_fitted_scale_minimises_the_nll():
    g = torch.Generator().manual_seed(1)
    y, var = 3 * torch.randn(1000, generator=g), torch.ones(1000)
    s = fit_variance_scale(torch.zeros(1000), var, y)
    assert s == pytest.approx((y**2).mean().item())
    best = gaussian_nll(torch.zeros(1000), s * var, y)
    for other in (0.9 * s, 1.1 * s):
        assert gaussian_nll(torch.zeros(1000), other * var, y) > best


def test_scale_variance_scales_var_samples_and_covariance_and_keeps_the_mean():
    samples = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    pred = Prediction(
        mean=samples.mean(0), var=samples.var(0), samples=samples, covariance=lambda r, c: 1.0
    )
    scaled = scale_variance(pred, 4.0)
    assert torch.equal(scaled.mean, pred.mean) and torch.equal(scaled.var, 4 * pred.var)
    assert torch.allclose(scaled.samples.var(0), scaled.var)
    assert torch.allclose(scaled.samples.mean(0), pred.mean)
    assert scaled.covariance(torch.tensor([0]), torch.tensor([1])) == 4.0


def test_calibration_metrics_recalibrate_with_the_val_factor():
    g = torch.Generator().manual_seed(2)
    y_val, y_test = 2 * torch.randn(5000, generator=g), 2 * torch.randn(5000, generator=g)
    raw = Prediction(mean=torch.zeros(5000), var=torch.ones(5000))  # std 1, true std 2
    m = calibration_metrics(raw, y_test, raw, y_val)
    assert m["var_scale"] == pytest.approx(4.0, rel=0.05)
    assert m["val_rmse"] == pytest.approx(2.0, rel=0.05)
    assert m["test_nll_recal"] < m["test_nll"]
    assert m["test_miscal_recal"] < 0.02 < m["test_miscal"]
    # a constant std equal to the val RMSE is the right answer here
    assert m["test_nll_const"] == pytest.approx(m["test_nll_recal"], abs=0.01)
    assert m["test_mean_std"] == pytest.approx(1.0)
    assert m["test_mean_std_recal"] == pytest.approx(2.0, rel=0.05)
