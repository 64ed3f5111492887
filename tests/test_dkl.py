"""Deep-kernel GP: fit, overfit, block covariance against GPyTorch's dense posterior."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import check_joint_covariance, quiet_trainer
from gp_checks import check_gpytorch_posterior, check_quick_fit

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.dkl import DeepKernelGP
from regal_torch.models.predict_rows import predict
from regal_torch.models.sparse_gp import SparsePosterior


def _fit(ds, n, epochs, **kw):
    dm = ActiveDataModule(ds, "gap", val_size=20, test_size=60, batch_size=32)
    dm.label(dm.pool[:n], dm.truth[dm.pool[:n]])
    pl.seed_everything(0)
    model = DeepKernelGP(ds.num_node_features, ds.num_edge_features, hidden_dim=32, **kw)
    trainer = quiet_trainer(epochs)
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer


@pytest.fixture(scope="module")
def fitted(qm9_small):
    return _fit(qm9_small, 96, 5, lr=3e-3, gp_lr=0.05)


def test_quick_fit_beats_the_mean_and_variance_is_positive(fitted):
    check_quick_fit(fitted, embedding_dim=16)


def test_block_covariance_is_gpytorchs_dense_posterior(fitted):
    check_gpytorch_posterior(fitted, ([2, 9, 0], [9, 40, 1, 59]), rtol=1e-4)


def test_prediction_before_fit_is_refused(qm9_small):
    model = DeepKernelGP(qm9_small.num_node_features, qm9_small.num_edge_features, 16)
    dm = ActiveDataModule(qm9_small, "gap", val_size=0, test_size=0)
    with pytest.raises(RuntimeError, match="no posterior"):
        model.predict_step(next(iter(dm.loader(dm.pool[:4]))))


@pytest.mark.slow
def test_overfits_a_tiny_set(qm9_small):
    dm, model, trainer = _fit(qm9_small, 32, 150, lr=3e-3, gp_lr=0.05)
    pred = predict(trainer, model, dm.loader(dm.labeled))
    _, std = dm.target_scaling()
    assert (pred.mean - dm.labels[dm.labeled]).pow(2).mean().sqrt() < 0.1 * std


def test_sparse_posterior_at_all_training_inputs_is_the_exact_one(fitted):
    dm, model, trainer = fitted
    train_x, train_y = model.training_set(dm.loader(dm.labeled, dm.labels[dm.labeled]))
    sparse = SparsePosterior(model.gp, train_x, train_y, model.target_scaler)  # Z = train_x
    x = model.training_set(dm.loader(dm.test, dm.truth[dm.test]))[0]
    same = torch.eye(len(x))
    for got, want in zip(sparse.mean_var(x), model.posterior.mean_var(x), strict=True):
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-4)
    want = model.posterior.covariance(x, x, same)
    assert torch.allclose(sparse.covariance(x, x, same), want, atol=1e-4)


def test_above_exact_max_the_posterior_is_variational(fitted):
    dm, model, trainer = fitted
    exact = model.posterior
    model.exact_max, model.inducing_points = 50, 30
    try:
        model.condition(*model.training_set(dm.loader(dm.labeled, dm.labels[dm.labeled])))
        assert isinstance(model.posterior, SparsePosterior)
        assert model.posterior.inducing.shape == (30, 16)
        pred = predict(trainer, model, dm.loader(dm.test))
        check_joint_covariance(pred, ([2, 9, 0], [9, 40, 1, 59]), rtol=1e-4)
        r, c = torch.tensor([2, 9, 0]), torch.tensor([9, 40, 1, 59])
        x, same = pred.embedding, (r[:, None] == c[None, :]).float()
        uncached = model.posterior.covariance(x[r], x[c], same)  # solves both blocks afresh
        assert torch.allclose(pred.covariance(r, c), uncached, atol=1e-6)
    finally:
        model.exact_max, model.inducing_points, model.posterior = 3000, 1000, exact
