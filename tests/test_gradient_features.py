"""Gradient features: exact ones equal autograd's per-molecule gradients, sketched ones give
their kernel within the sketch's error bound, and the predict path hands them to strategies."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer
from torch import nn

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.gradient_features import (
    GradientSketch,
    cached_sketch,
    gradient_features,
)
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest


def _mc_model(ds):
    pl.seed_everything(0)
    model = MCDropoutRegressor(ds.num_node_features, ds.num_edge_features, hidden_dim=8)
    return model.eval()


def _ensemble(ds):
    pl.seed_everything(0)
    model = EnsembleRegressor(ds.num_node_features, ds.num_edge_features, members=2, hidden_dim=8)
    return model.eval()


def _output(model):
    return (
        model._standardized if isinstance(model, MCDropoutRegressor) else model._standardized_mean
    )


def _autograd_gradients(model, batch) -> torch.Tensor:
    """Each molecule's gradient w.r.t. the weights of every linear layer, one backward per
    molecule: ``[B, P]``, in the order of ``model.gradient_layers()``."""
    params = []
    for layer in model.gradient_layers():
        params += [layer.module.weight, layer.module.bias]
    rows = []
    for g in range(batch.num_graphs):
        out = _output(model)(batch)[g]
        grads = torch.autograd.grad(out, params)
        rows.append(torch.cat([gr.flatten() for gr in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("make", [_mc_model, _ensemble], ids=["mc_dropout", "ensemble"])
def test_exact_features_give_the_exact_gradient_kernel(qm9_small, batch, make):
    model = make(qm9_small)
    small = batch.__class__.from_data_list(batch.to_data_list()[:6])
    exact = gradient_features(_output(model), model.gradient_layers(), small, GradientSketch(None))
    want = _autograd_gradients(model, small)
    n_params = sum(
        layer.module.weight.numel() + layer.module.bias.numel() for layer in model.gradient_layers()
    )
    assert exact.shape == (6, n_params)
    # The features are the gradients up to the order of entries within a layer, so their
    # kernels (all inner products) agree exactly.
    assert torch.allclose(exact @ exact.T, want @ want.T, rtol=1e-4, atol=1e-6)
    # and per molecule, the squared norm of each layer's block is that layer's gradient's
    assert torch.allclose(exact.square().sum(1), want.square().sum(1), rtol=1e-4)


def _error_bound(model, batch, sketch_dim: int) -> torch.Tensor:
    """3 sqrt(sum_l B_l(G)^2 B_l(G')^2 / s), the bound on each sketched kernel entry's std,
    with B_l(G) = sum over G's rows of |[x_r, 1]| |d_r| (module docstring), from hooks."""
    layers = [g.module for g in model.gradient_layers()]
    levels = [g.level for g in model.gradient_layers()]
    inputs, outputs = {}, {}

    def record(i):
        def hook(module, args, out):
            inputs[i], outputs[i] = args[0], out

        return hook

    hooks = [m.register_forward_hook(record(i)) for i, m in enumerate(layers)]
    out = _output(model)(batch)
    for h in hooks:
        h.remove()
    grads = torch.autograd.grad(out.sum(), [outputs[i] for i in range(len(layers))])
    graph_of = {
        "node": batch.batch,
        "edge": batch.batch[batch.edge_index[0]],
        "graph": torch.arange(batch.num_graphs),
    }
    total = torch.zeros(batch.num_graphs, batch.num_graphs)
    for i, d in enumerate(grads):
        x = inputs[i].detach()
        x_norm = (x.square().sum(-1) + 1).sqrt()
        per_row = (x_norm * d.norm(dim=-1)).reshape(-1)
        b = torch.zeros(batch.num_graphs).index_add_(0, graph_of[levels[i]], per_row)
        total += torch.outer(b.square(), b.square())
    return 3 * (total / sketch_dim).sqrt()


def test_sketched_kernel_is_within_the_sketch_error(qm9_small, batch):
    model = _mc_model(qm9_small)
    layers = model.gradient_layers()
    exact = gradient_features(model._standardized, layers, batch, GradientSketch(None))
    kernel = exact @ exact.T
    bound = _error_bound(model, batch, 2048)
    errors = []
    for seed in range(3):
        sketch = gradient_features(model._standardized, layers, batch, GradientSketch(2048, seed))
        assert sketch.shape == (40, 2048)
        error = sketch @ sketch.T - kernel
        assert (error.abs() <= 4 * bound).all()  # within 4 standard deviations, every entry
        errors.append(error)
    # unbiased: the mean of independent sketches is closer than one sketch
    assert (sum(errors) / 3).abs().mean() < errors[0].abs().mean()
    # the same seed gives the same features (pool and labeled set share one kernel)
    again = gradient_features(model._standardized, layers, batch, GradientSketch(2048, 0))
    first = gradient_features(model._standardized, layers, batch, GradientSketch(2048, 0))
    assert torch.equal(again, first)


def test_the_bound_is_not_vacuous(qm9_small, batch):
    model = _mc_model(qm9_small)
    exact = gradient_features(
        model._standardized, model.gradient_layers(), batch, GradientSketch(None)
    )
    bound = _error_bound(model, batch, 2048)
    # at s = 2048 the allowed error is a small fraction of the kernel's diagonal
    assert (4 * bound.diagonal() < 0.6 * exact.square().sum(1)).all()


def test_predict_gives_what_is_asked_for(qm9_small):
    dm = ActiveDataModule(qm9_small, "gap", val_size=0, test_size=0, predict_batch_size=25)
    model = MCDropoutRegressor(qm9_small.num_node_features, qm9_small.num_edge_features, 16)
    model.set_target_scaling(5.0, 2.0)
    trainer = quiet_trainer(1)
    loader = dm.loader(dm.pool[:60])
    full = predict(trainer, model, loader)
    assert full.var is not None and full.samples is not None and full.gradients is None
    cheap = predict(trainer, model, loader, PredictionRequest(frozenset({"embedding"})))
    assert cheap.var is None and cheap.samples is None and cheap.gradients is None
    assert torch.allclose(cheap.embedding, full.embedding)
    # one deterministic pass: the mean is the network's output without dropout
    model.eval()
    outputs = torch.cat([model(b) for b in loader])
    assert torch.allclose(cheap.mean, outputs, atol=1e-5)
    request = PredictionRequest(frozenset({"gradients"}), sketch_dim=64, sketch_seed=3)
    grad = predict(trainer, model, loader, request)
    assert grad.gradients.shape == (60, 64) and grad.embedding is None
    # batches are sketched with the same projections: batch size does not change features
    dm.predict_batch_size = 60
    whole = predict(trainer, model, dm.loader(dm.pool[:60]), request)
    assert torch.allclose(whole.gradients, grad.gradients, rtol=1e-4, atol=1e-5)
    # one sketch (its projections drawn once) serves every batch of a round's predictions
    assert cached_sketch(64, 3) is cached_sketch(64, 3) and cached_sketch(64, 4).seed == 4
    # and the model's own default is back after the call
    assert model.prediction_request == PredictionRequest()


def test_gradient_features_leave_the_weights_untouched(qm9_small, batch):
    model = _mc_model(qm9_small)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_features(model._standardized, model.gradient_layers(), batch, GradientSketch(32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(isinstance(g.module, nn.Module) for g in model.gradient_layers())
