"""The MC-dropout GNN: shapes, batched MC sampling, quick fit and overfit."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.mc_dropout import MCDropoutRegressor, _replicate
from regal_torch.models.prediction import Prediction


def _model(ds, **kw):
    return MCDropoutRegressor(ds.num_node_features, ds.num_edge_features, hidden_dim=32, **kw)


def test_replicated_batch_equals_copies_of_the_batch(qm9_small, batch):
    model = _model(qm9_small).eval()
    t = 4
    emb = model._embed(*_replicate(batch, t), t * batch.num_graphs)
    assert torch.allclose(
        emb.view(t, batch.num_graphs, -1), model.embedding(batch).expand(t, -1, -1), atol=1e-5
    )


def test_predict_step_gives_a_full_prediction(qm9_small, batch):
    pl.seed_everything(0)
    model = _model(qm9_small, mc_samples=8).eval()
    model.set_target_scaling(5.0, 2.0)
    pred = model.predict_step(batch)
    assert isinstance(pred, Prediction)
    assert pred.samples.shape == (8, 40) and pred.embedding.shape == (40, 32)
    assert (pred.var > 0).all()
    assert not torch.allclose(pred.samples[0], pred.samples[1])  # dropout is on
    assert torch.allclose(pred.mean, pred.samples.mean(0))
    # original units: the deterministic output is shifted and scaled by the target scaling
    raw = model._standardized(batch)
    assert torch.allclose(model(batch), raw * 2.0 + 5.0)


def test_quick_fit_lowers_the_training_loss(qm9_small):
    dm = ActiveDataModule(qm9_small, "gap", val_size=20, test_size=20, batch_size=32)
    dm.label(dm.pool[:128], dm.truth[dm.pool[:128]])
    pl.seed_everything(0)
    model = _model(qm9_small, dropout=0.0)
    before = _mse(model, dm)
    quiet_trainer(5).fit(model, datamodule=dm)
    mean, std = dm.target_scaling()
    assert model.target_mean.item() == pytest.approx(mean)
    assert model.target_std.item() == pytest.approx(std)
    assert _mse(model, dm) < 0.8 * before


def test_overfits_a_tiny_set(qm9_small):
    dm = ActiveDataModule(qm9_small, "gap", val_size=20, test_size=20, batch_size=16)
    dm.label(dm.pool[:32], dm.truth[dm.pool[:32]])
    pl.seed_everything(0)
    model = _model(qm9_small, dropout=0.0, lr=3e-3)
    quiet_trainer(150).fit(model, datamodule=dm)
    _, std = dm.target_scaling()
    assert _mse(model, dm) ** 0.5 < 0.1 * std


def _mse(model, dm):
    model.eval()
    with torch.no_grad():
        loader = dm.loader(dm.labeled, dm.labels[dm.labeled])
        mse = torch.cat([(model(b) - b.y) ** 2 for b in loader]).mean().item()
    model.train()
    return mse
