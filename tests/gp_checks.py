"""Checks shared by the GP regressors' tests (``model=gp``, ``model=dkl``)."""

from __future__ import annotations

import torch
from conftest import check_joint_covariance, gpytorch_posterior

from regal_torch.models.predict_rows import predict


def check_quick_fit(fitted, embedding_dim: int) -> None:
    """The test-set prediction of a fitted ``(dm, model, trainer)`` beats predicting the
    labeled mean, has a positive variance and the GP inputs as embedding."""
    dm, model, trainer = fitted
    pred = predict(trainer, model, dm.loader(dm.test))
    truth = dm.truth[dm.test]
    baseline = (truth - dm.labels[dm.labeled].mean()).abs().mean()
    assert (pred.mean - truth).abs().mean() < 0.9 * baseline
    assert (pred.var > 0).all() and pred.embedding.shape == (len(dm.test), embedding_dim)


def check_gpytorch_posterior(fitted, rows_cols: tuple[list[int], list[int]], rtol: float):
    """The test-set prediction's mean and block covariance are GPyTorch's own dense posterior
    conditioned on the labeled set (see ``conftest.check_joint_covariance``)."""
    dm, model, trainer = fitted
    pred = predict(trainer, model, dm.loader(dm.test))
    dense = check_joint_covariance(pred, rows_cols, rtol=rtol)
    mean, covariance = gpytorch_posterior(model, dm, pred.embedding)
    assert torch.allclose(pred.mean, mean, atol=1e-4)
    assert torch.allclose(dense, covariance, atol=1e-4)
