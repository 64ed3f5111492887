"""The regressors' shared skeleton: target scaling module, old state_dicts, GP posteriors,
a fingerprint GP fitted without bending Lightning, pooling names."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.dkl import DeepKernelGP
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.evidential import EvidentialRegressor
from regal_torch.models.exact_gp import ExactPosterior
from regal_torch.models.gp import FingerprintGP
from regal_torch.models.gp_posterior import GPPosterior
from regal_torch.models.laplace import LaplaceRegressor
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.models.mean_variance import MeanVarianceRegressor
from regal_torch.models.sparse_gp import SparsePosterior
from regal_torch.models.target_scaling import TargetScaler


def _dm(ds, n, **kw):
    dm = ActiveDataModule(ds, "gap", val_size=20, test_size=20, batch_size=32, **kw)
    dm.label(dm.pool[:n], dm.truth[dm.pool[:n]])
    return dm


def test_target_scaler_maps_both_ways():
    scaler = TargetScaler(5.0, 2.0)
    z = torch.tensor([-1.0, 0.0, 0.5])
    assert torch.equal(scaler(z), torch.tensor([3.0, 5.0, 6.0]))
    assert torch.equal(scaler.standardise(scaler(z)), z)
    assert torch.equal(scaler.scale_variance(torch.ones(2)), torch.full((2,), 4.0))
    with pytest.raises(ValueError, match="std must be positive"):
        TargetScaler(0.0, 0.0)


def test_a_handed_in_scaling_is_kept_and_without_one_the_datamodules_is_read(qm9_small):
    dm = _dm(qm9_small, 64)
    dims = qm9_small.num_node_features, qm9_small.num_edge_features
    given = MCDropoutRegressor(*dims, hidden_dim=8, target_scaling=TargetScaler(5.0, 2.0))
    read = MCDropoutRegressor(*dims, hidden_dim=8)
    for model in (given, read):
        quiet_trainer(1).fit(model, datamodule=dm)
    assert (given.target_mean.item(), given.target_std.item()) == (5.0, 2.0)
    mean, std = dm.target_scaling()
    assert read.target_mean.item() == pytest.approx(mean)
    assert read.target_std.item() == pytest.approx(std)
    assert "target_scaling" not in read.hparams


@pytest.mark.parametrize(
    "make", ["mc_dropout", "ensemble", "mean_variance", "laplace", "evidential", "dkl", "gp"]
)
def test_state_dicts_saved_before_the_scaler_module_still_load(qm9_small, make):
    dims = qm9_small.num_node_features, qm9_small.num_edge_features
    build = {
        "mc_dropout": lambda: MCDropoutRegressor(*dims, hidden_dim=8),
        "ensemble": lambda: EnsembleRegressor(*dims, members=2, hidden_dim=8),
        "mean_variance": lambda: MeanVarianceRegressor(*dims, hidden_dim=8),
        "laplace": lambda: LaplaceRegressor(*dims, hidden_dim=8),
        "evidential": lambda: EvidentialRegressor(*dims, hidden_dim=8),
        "dkl": lambda: DeepKernelGP(*dims, hidden_dim=8),
        "gp": lambda: FingerprintGP(),
    }[make]
    old = build().state_dict()
    old = {k.replace("target_scaler.", "target_"): v for k, v in old.items()}
    old["target_mean"], old["target_std"] = torch.tensor(1.5), torch.tensor(0.5)
    model = build()
    model.load_state_dict(old)  # strict: the old names are the scaler's buffers
    assert (model.target_mean.item(), model.target_std.item()) == (1.5, 0.5)


def test_both_gp_posteriors_follow_one_protocol(qm9_small):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 4, generator=g), torch.randn(30, generator=g)
    gp = DeepKernelGP(qm9_small.num_node_features, qm9_small.num_edge_features, 8, feature_dim=4).gp
    scaling = TargetScaler(1.0, 3.0)
    query, same = torch.rand(7, 4, generator=g), torch.eye(7)
    for posterior in (
        ExactPosterior(gp, x, y, scaling),
        SparsePosterior(gp, x, y, scaling, inducing=x[:10]),
    ):
        assert isinstance(posterior, GPPosterior)
        mean, var = posterior.mean_var(query)
        assert mean.shape == var.shape == (7,) and mean.dtype == var.dtype == torch.float32
        factors = posterior.whiten(query)
        assert all(f.shape[1] == 7 for f in factors)
        cov = posterior.covariance(query, query, same)
        assert cov.shape == (7, 7) and torch.allclose(cov.diagonal(), var, rtol=1e-5)
        first_two = tuple(f[:, :2] for f in factors)
        block = posterior.covariance_whitened(query[:2], query, first_two, factors, same[:2])
        assert torch.allclose(block, cov[:2], atol=1e-6)


def test_the_fingerprint_gp_fits_without_lightning_warnings(qm9_small):
    dm = _dm(qm9_small, 40)
    pl.seed_everything(0)
    model = FingerprintGP(fit_iters=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = quiet_trainer(3)
        trainer.fit(model, datamodule=dm)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "optimizer" in m or "validation_step" in m], messages
    assert trainer.global_step == 5 and model.posterior is not None
    again = FingerprintGP(fit_iters=5)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        min_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=2,
    )
    trainer.fit(again, datamodule=dm)  # a sanity check before the posterior, batches after it
    assert trainer.global_step == 5 and trainer.current_epoch == 2
    assert torch.equal(
        again.predict_step(next(iter(dm.val_dataloader()))).mean,
        model.predict_step(next(iter(dm.val_dataloader()))).mean,
    )


def test_unknown_pooling_is_refused(qm9_small):
    with pytest.raises(ValueError, match="pooling must be mean, sum or max"):
        MCDropoutRegressor(
            qm9_small.num_node_features, qm9_small.num_edge_features, 8, pooling="median"
        )


def test_feature_scaler_standardises_columns_and_a_constant_one_becomes_zero():
    from regal_torch.models.feature_scaling import FeatureScaler

    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    scaler = FeatureScaler.fit(x)
    assert torch.equal(scaler(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="positive std"):
        FeatureScaler(torch.zeros(2), torch.tensor([1.0, 0.0]))
