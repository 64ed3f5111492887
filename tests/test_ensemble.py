"""The deep ensemble: grouped encoder equals M plain encoders, members differ, fit, overfit."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.gine import GINEEncoder
from regal_torch.models.grouped_gine import GroupedGINEEncoder


def _dm(ds, n, batch_size):
    dm = ActiveDataModule(ds, "gap", val_size=20, test_size=20, batch_size=batch_size)
    dm.label(dm.pool[:n], dm.truth[dm.pool[:n]])
    return dm


def test_each_member_of_the_grouped_encoder_is_a_plain_gine_encoder(qm9_small, batch):
    torch.manual_seed(0)
    dims = qm9_small.num_node_features, qm9_small.num_edge_features
    grouped = GroupedGINEEncoder(3, *dims, hidden_dim=16, num_layers=3, dropout=0.0)
    grouped.eps.data.uniform_(-0.5, 0.5)
    out = grouped.eval()(batch.x, batch.edge_index, batch.edge_attr)
    for m in range(3):
        plain = GINEEncoder(*dims, hidden_dim=16, num_layers=3, dropout=0.0).eval()
        with torch.no_grad():
            plain.node_in.weight.copy_(grouped.node_in.weight[m].T)
            plain.node_in.bias.copy_(grouped.node_in.bias[m, 0])
            for layer, conv in enumerate(plain.convs):
                conv.lin.weight.copy_(grouped.edge_lins[layer].weight[m].T)
                conv.lin.bias.copy_(grouped.edge_lins[layer].bias[m, 0])
                for i in (0, 1):
                    conv.nn[2 * i].weight.copy_(grouped.mlps[layer][i].weight[m].T)
                    conv.nn[2 * i].bias.copy_(grouped.mlps[layer][i].bias[m, 0])
                conv.eps.copy_(grouped.eps[layer, m, 0, 0])
        want = plain(batch.x, batch.edge_index, batch.edge_attr)
        assert torch.allclose(out[m], want, atol=1e-5)


def test_members_differ_and_variance_is_positive(qm9_small, batch):
    pl.seed_everything(0)
    model = EnsembleRegressor(
        qm9_small.num_node_features, qm9_small.num_edge_features, members=4, hidden_dim=16
    ).eval()
    pred = model.predict_step(batch)
    assert pred.samples.shape == (4, 40) and pred.embedding.shape == (40, 64)
    assert (pred.var > 0).all()
    for a in range(4):
        for b in range(a):
            assert not torch.allclose(pred.samples[a], pred.samples[b])
    assert torch.allclose(pred.mean, model(batch))


def test_one_fit_trains_every_member(qm9_small):
    dm = _dm(qm9_small, 128, 32)
    pl.seed_everything(0)
    model = EnsembleRegressor(
        qm9_small.num_node_features, qm9_small.num_edge_features, members=3, hidden_dim=32
    )
    before = _member_mse(model, dm)
    start = model.head_out.weight.detach().clone()
    quiet_trainer(5).fit(model, datamodule=dm)
    after = _member_mse(model, dm)
    assert (after < 0.8 * before).all()
    assert (model.head_out.weight - start).flatten(1).norm(dim=1).gt(0).all()


@pytest.mark.slow
def test_overfits_a_tiny_set(qm9_small):
    dm = _dm(qm9_small, 32, 16)
    pl.seed_everything(0)
    model = EnsembleRegressor(
        qm9_small.num_node_features, qm9_small.num_edge_features, 3, 32, lr=3e-3
    )
    quiet_trainer(150).fit(model, datamodule=dm)
    _, std = dm.target_scaling()
    assert (_member_mse(model, dm).sqrt() < 0.1 * std).all()


def _member_mse(model, dm):
    model.eval()
    with torch.no_grad():
        loader = dm.loader(dm.labeled, dm.labels[dm.labeled])
        se = torch.cat([(model.members_forward(b) - b.y) ** 2 for b in loader], dim=1)
    model.train()
    return se.mean(1)
