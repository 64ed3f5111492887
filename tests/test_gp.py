"""Exact GP on fingerprints: fit, overfit, and its block covariance against GPyTorch's own."""

import math

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer
from gp_checks import check_gpytorch_posterior, check_quick_fit

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.gp import FingerprintGP
from regal_torch.models.predict_rows import predict
from regal_torch.models.tanimoto import TanimotoKernel, morgan_fingerprints


@pytest.fixture(scope="module")
def fitted(qm9_small):
    dm = ActiveDataModule(qm9_small, "gap", val_size=20, test_size=60, predict_batch_size=25)
    # 129 = 2 x 64 + 1: the training loader drops a last batch of one; the GP must not
    dm.label(dm.pool[:129], dm.truth[dm.pool[:129]])
    pl.seed_everything(0)
    model = FingerprintGP(fit_iters=60)
    trainer = quiet_trainer(3)
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer


def test_tanimoto_kernel_of_known_bit_vectors():
    a = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    k = TanimotoKernel()(a, a).to_dense()
    assert torch.allclose(k, torch.tensor([[1.0, 0.25], [0.25, 1.0]]))
    assert torch.allclose(TanimotoKernel()(a, a, diag=True), torch.ones(2))
    fps = morgan_fingerprints(["CCO", "CCO", "c1ccccc1"])
    assert fps.shape == (3, 2048) and torch.equal(fps[0], fps[1]) and fps[2].sum() > 0


def test_the_fit_is_one_training_step_then_validation(fitted):
    _, _, trainer = fitted
    assert trainer.global_step == 60  # fit_iters Adam steps
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1
    assert "val/mae" in trainer.callback_metrics


def test_quick_fit_beats_the_mean_and_variance_is_positive(fitted):
    check_quick_fit(fitted, embedding_dim=2048)


def test_fits_its_training_set_closely(fitted):
    dm, model, trainer = fitted
    pred = predict(trainer, model, dm.loader(dm.labeled))
    _, std = dm.target_scaling()
    assert (pred.mean - dm.labels[dm.labeled]).pow(2).mean().sqrt() < 0.3 * std


def test_block_covariance_is_gpytorchs_dense_posterior(fitted):
    check_gpytorch_posterior(fitted, ([5, 0, 17], [3, 5, 59, 1]), rtol=1e-5)


def test_in_the_loop_strategies_see_the_recalibrated_joint_posterior(
    tiny, tmp_path, seen_by_uncertainty
):
    from conftest import compose_config

    from regal_torch.loop.active_loop import ActiveLoop

    histories = []
    for recalibrate in ("true", "false"):
        overrides = [
            *(o for o in tiny if not o.startswith("model.")),
            "model=gp",
            "strategy=uncertainty",
            "model.fit_iters=20",
            "loop.initial_size=30",
            "loop.rounds=1",
            f"loop.recalibrate={recalibrate}",
        ]
        cfg = compose_config(overrides)
        histories.append(ActiveLoop(cfg, tmp_path / recalibrate).run())
    scaled, raw = seen_by_uncertainty
    scale = histories[0][0]["var_scale"]
    assert scale == pytest.approx(histories[1][0]["var_scale"]) and scale != pytest.approx(1)
    assert torch.allclose(scaled.var, scale * raw.var, rtol=1e-5)
    rows = torch.arange(5)
    assert torch.allclose(scaled.covariance(rows, rows), scale * raw.covariance(rows, rows))
    assert torch.allclose(raw.covariance(rows, rows).diagonal(), raw.var[:5], rtol=1e-5)
    for row in histories[0]:
        for key in ("test_nll", "test_nll_recal", "test_spearman", "test_miscal_recal"):
            assert math.isfinite(row[key])
