"""The mean-variance head learns where the noise is; the last-layer Laplace posterior is the
linear model's, with evidence-fitted precisions, grows away from the data and is saved."""

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer
from scipy.stats import spearmanr

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.table import TableDataset
from regal_torch.models.evidential import EvidentialRegressor
from regal_torch.models.laplace import LaplaceRegressor
from regal_torch.models.mean_variance import MeanVarianceRegressor
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.models.target_scaling import TargetScaler

UNCERTAINTY = PredictionRequest(frozenset(("mean", "var")))


@pytest.fixture(scope="module")
def noisy_table(tmp_path_factory) -> tuple[TableDataset, np.ndarray]:
    """600 rows of y = sin(3 x1) + x2 + noise with std 0.05 + 0.5 |x1| (and the noise std)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 2))
    noise = 0.05 + 0.5 * np.abs(x[:, 0])
    y = np.sin(3 * x[:, 0]) + x[:, 1] + noise * rng.standard_normal(600)
    path = tmp_path_factory.mktemp("noisy") / "noisy.csv"
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": y}).to_csv(path, index=False)
    return TableDataset(str(path), "y"), noise


def _fit(table, factory, epochs):
    dm = ActiveDataModule(table, "y", val_size=0.1, test_size=0.3, batch_size=64)
    dm.label(dm.pool, dm.truth[dm.pool])
    pl.seed_everything(0)
    model = factory(**dm.model_inputs(), target_scaling=TargetScaler(*dm.target_scaling()))
    quiet_trainer(epochs).fit(model, datamodule=dm)
    return dm, model


def test_the_mean_variance_head_finds_where_the_noise_is(noisy_table):
    table, noise = noisy_table
    dm, model = _fit(table, lambda **kw: MeanVarianceRegressor(hidden_dim=32, lr=3e-3, **kw), 80)
    pred = predict(quiet_trainer(1), model, dm.loader(dm.test), UNCERTAINTY)
    true_std = noise[dm.test.numpy()]
    assert spearmanr(pred.var.sqrt().numpy(), true_std).statistic > 0.7
    # in the target's units: the mean predicted std is the noise's, within a factor 1.5
    ratio = pred.var.sqrt().mean().item() / true_std.mean()
    assert 1 / 1.5 < ratio < 1.5, ratio
    with torch.no_grad():
        forward = torch.cat([model.eval()(batch) for batch in dm.loader(dm.test)])
    assert torch.equal(pred.mean, forward)


def test_the_evidential_loss_is_the_student_t_likelihood_and_the_variance_its_own():
    torch.manual_seed(0)
    model = EvidentialRegressor(2, None, hidden_dim=4, regularizer=0.0)
    embedding, target = torch.randn(6, 4), torch.randn(6)
    nu, alpha, beta = model.evidence(embedding)
    assert (nu > 0).all() and (alpha > 1).all() and (beta > 0).all()
    # the NIG marginal is a Student t: 2 alpha dof, scale^2 beta (1 + nu) / (nu alpha)
    t = torch.distributions.StudentT(
        2 * alpha, model._head(embedding), (beta * (1 + nu) / (nu * alpha)).sqrt()
    )
    model.embedding = lambda batch: embedding  # the loss of these embeddings
    assert model.loss(None, target).item() == pytest.approx(
        -t.log_prob(target).mean().item(), rel=1e-5
    )
    assert torch.allclose(model.standardised_variance(embedding), t.variance)


def test_the_evidential_model_fits_and_its_variance_ranks_the_noise(noisy_table):
    table, noise = noisy_table
    dm, model = _fit(table, lambda **kw: EvidentialRegressor(hidden_dim=32, lr=3e-3, **kw), 80)
    pred = predict(quiet_trainer(1), model, dm.loader(dm.test), UNCERTAINTY)
    truth = dm.truth[dm.test]
    assert (pred.mean - truth).abs().mean() < 0.5 * (truth - truth.mean()).abs().mean()
    assert spearmanr(pred.var.sqrt().numpy(), noise[dm.test.numpy()]).statistic > 0.5


def test_the_laplace_posterior_is_the_linear_models_with_evidence_precisions():
    torch.manual_seed(0)
    model = LaplaceRegressor(2, None, hidden_dim=4)
    phi = torch.randn(500, 4)
    w, b, noise = torch.tensor([1.0, -2.0, 0.5, 0.0]), 0.3, 0.2
    target = phi @ w + b + noise * torch.randn(500)
    design = torch.cat([phi, torch.ones(500, 1)], 1)
    solution = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.squeeze(1)
    with torch.no_grad():  # the trained output layer: the least-squares weights
        model.head_out.weight.copy_(solution[:4].unsqueeze(0))
        model.head_out.bias.fill_(solution[4])
    model.fit_posterior(phi, target)
    assert model.noise_var.sqrt().item() == pytest.approx(noise, rel=0.1)
    # the fixed point: alpha = gamma / |w|^2 with gamma = sum beta l / (alpha + beta l)
    precision = torch.linalg.inv(model.posterior_cov.double())
    beta = 1 / model.noise_var.double()
    alpha = (precision - beta * design.double().T @ design.double()).diagonal().mean()
    assert torch.allclose(precision, beta * design.double().T @ design.double()
                          + alpha * torch.eye(5, dtype=torch.float64), rtol=1e-4)  # fmt: skip
    eigen = torch.linalg.eigvalsh(design.double().T @ design.double())
    gamma = (beta * eigen / (alpha + beta * eigen)).sum()
    assert alpha.item() == pytest.approx((gamma / solution.double().pow(2).sum()).item(), rel=1e-3)
    # the variance grows away from the data and never falls below the noise
    near, far = model.standardised_variance(phi[:50]), model.standardised_variance(10 * phi[:50])
    assert (far > near).all() and (near >= model.noise_var).all()


def test_a_fit_sets_the_laplace_posterior_and_a_saved_model_keeps_it(noisy_table, tmp_path):
    table, _ = noisy_table
    dm, model = _fit(table, lambda **kw: LaplaceRegressor(hidden_dim=16, lr=3e-3, **kw), 30)
    assert not torch.equal(model.posterior_cov, torch.eye(17))
    # the noise is about the labeled molecules' mean squared residual (standardised)
    model.eval()
    with torch.no_grad():
        residual = torch.cat([
            model._standardized(batch) - model.target_scaler.standardise(batch.y.view(-1))
            for batch in dm.loader(dm.labeled, dm.truth[dm.labeled])
        ])  # fmt: skip
    ratio = model.noise_var.item() / residual.pow(2).mean().item()
    assert 0.8 < ratio < 1.5, ratio
    pred = predict(quiet_trainer(1), model, dm.loader(dm.test), UNCERTAINTY)
    again = LaplaceRegressor(**dm.model_inputs(), hidden_dim=16)
    again.load_state_dict(model.state_dict())
    assert torch.equal(predict(quiet_trainer(1), again, dm.loader(dm.test), UNCERTAINTY).var,
                       pred.var)  # fmt: skip
