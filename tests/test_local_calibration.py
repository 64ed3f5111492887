"""Local recalibration: neighbour variance against brute force, its global factor, the
per-molecule scaling of variance, samples and covariance, and the loop option."""

import math

import pytest
import torch
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.models.prediction import Prediction
from regal_torch.uncertainty.calibration import fit_variance_scale, gaussian_nll, scale_variance
from regal_torch.uncertainty.local_calibration import (
    NeighbourCalibration,
    local_calibration_metrics,
    neighbour_variance,
)


def _brute(query, val, sq_error, k, leave_one_out):
    out = []
    for i, q in enumerate(query):
        d = (val - q).norm(dim=1)
        if leave_one_out:
            d[i] = math.inf
        out.append(sq_error[d.argsort()[:k]].mean())
    return torch.stack(out)


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_neighbour_variance_is_brute_force_in_blocks(monkeypatch, leave_one_out):
    import regal_torch.uncertainty.local_calibration as local

    monkeypatch.setattr(local, "_BLOCK_ROWS", 7)  # several blocks, a ragged last one
    g = torch.Generator().manual_seed(0)
    val, sq_error = torch.randn(30, 4, generator=g), torch.rand(30, generator=g)
    query = val if leave_one_out else torch.randn(25, 4, generator=g)
    got = neighbour_variance(query, val, sq_error, 5, leave_one_out)
    assert torch.allclose(got, _brute(query, val, sq_error, 5, leave_one_out))


def _clustered(n, g):
    """Two clusters in the embedding: errors of std 0.1 in one, 1.0 in the other."""
    side = torch.arange(n) % 2
    embedding = torch.randn(n, 3, generator=g) * 0.1 + 5.0 * side[:, None]
    target = torch.randn(n, generator=g) * torch.where(side == 1, 1.0, 0.1)
    return Prediction(mean=torch.zeros(n), var=torch.ones(n), embedding=embedding), target


def test_local_variance_finds_the_noisy_cluster_and_beats_a_global_factor():
    g = torch.Generator().manual_seed(1)
    (val, val_y), (test, test_y) = _clustered(400, g), _clustered(2000, g)
    local = NeighbourCalibration(val, val_y, k=20)
    var = local.variance(test)
    assert var[1::2].mean() > 50 * var[0::2].mean()  # std ratio 10: variance ratio ~100
    # the factor is fitted on the validation set left one out
    assert local.scale == pytest.approx(
        fit_variance_scale(val.mean, local.validation_variance() / local.scale, val_y), rel=1e-5
    )
    metrics = local_calibration_metrics(local, test, test_y)
    global_var = fit_variance_scale(val.mean, val.var, val_y) * test.var
    assert metrics["test_nll_local"] < gaussian_nll(test.mean, global_var, test_y) - 0.5
    assert metrics["test_spearman_local"] > 0.5 and metrics["test_miscal_local"] < 0.05
    assert torch.allclose(scale_variance(test, local.factors(test)).var, var)


def test_local_calibration_refuses_a_model_without_embedding_and_a_bad_k():
    val = Prediction(mean=torch.zeros(10), var=torch.ones(10))
    with pytest.raises(RegalError, match="needs Prediction.embedding"):
        NeighbourCalibration(val, torch.zeros(10), 3)
    val = Prediction(mean=torch.zeros(10), var=torch.ones(10), embedding=torch.randn(10, 2))
    with pytest.raises(RegalError, match="between 1 and .* \\(9\\)"):
        NeighbourCalibration(val, torch.zeros(10), 10)


def test_per_molecule_factors_scale_samples_and_covariance_as_one_joint_posterior():
    g = torch.Generator().manual_seed(2)
    samples = torch.randn(6, 3, generator=g)
    a = torch.randn(3, 3, generator=g)
    dense = a @ a.T + torch.eye(3)
    pred = Prediction(
        mean=samples.mean(0),
        var=dense.diagonal().clone(),
        samples=samples,
        covariance=lambda r, c: dense[r][:, c],
    )
    factor = torch.tensor([1.0, 4.0, 9.0])
    scaled = scale_variance(pred, factor)
    assert torch.allclose(scaled.var, pred.var * factor)
    assert torch.allclose(scaled.samples.var(0), samples.var(0) * factor)
    assert torch.allclose(scaled.samples.mean(0), pred.mean)
    root = factor.sqrt()
    r, c = torch.tensor([2, 0]), torch.tensor([1, 2, 0])
    want = (root[:, None] * dense * root[None, :])[r][:, c]
    assert torch.allclose(scaled.covariance(r, c), want)


def test_the_loop_gives_strategies_the_local_variance(tiny, tmp_path, seen_by_uncertainty):
    histories = [
        ActiveLoop(
            compose_config([*tiny, "strategy=uncertainty", "loop.rounds=1", *extra]),
            tmp_path / str(i),
        ).run()
        for i, extra in enumerate([[], ["loop.local_neighbours=5"]])
    ]
    for row in histories[1]:
        for key in ("test_nll_local", "test_spearman_local", "test_miscal_local"):
            assert math.isfinite(row[key])
    assert "test_nll_local" not in histories[0][0]
    scaled, local = (
        seen_by_uncertainty  # same seed: the same model and raw pool prediction in round 0
    )
    assert torch.equal(scaled.mean, local.mean)
    ratio = local.var / scaled.var  # not one global factor: it varies from molecule to molecule
    assert ratio.max() > 1.5 * ratio.min()
    # the strategy is handed only what it asks for (the samples' stretch: the test above)
    assert local.samples is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loop.local_neighbours=0"], "must be null, a fraction .* or an integer from 1"),
        (["loop.local_neighbours=20"], "less one \\(19\\)"),
        (["loop.local_neighbours=5", "loop.recalibrate=false"], "needs loop.recalibrate=true"),
    ],
)
def test_bad_local_neighbours_are_refused_before_training(tiny, tmp_path, overrides, message):
    cfg = compose_config([*tiny, *overrides])
    with pytest.raises(RegalError, match=message):
        ActiveLoop(cfg, tmp_path / "bad")


def test_the_std_is_chosen_by_leave_one_out_nll_on_the_validation_molecules():
    g = torch.Generator().manual_seed(2)
    # errors clustered in the embedding: the local variance (no prior) wins
    val, val_y = _clustered(400, g)
    clustered = NeighbourCalibration(val, val_y, k=20)
    assert clustered.source == "local" and clustered.prior == 0
    assert clustered.chosen == "local+0"
    assert clustered.validation_nll["local+0"] == min(clustered.validation_nll.values())
    assert clustered.describe() == "local k=20"
    # the model's own variance is right (each error drawn with it): the own std wins
    n = 300
    var = torch.rand(n, generator=g) * 4 + 0.01
    own = Prediction(mean=torch.zeros(n), var=var, embedding=torch.randn(n, 3, generator=g))
    honest = NeighbourCalibration(own, torch.randn(n, generator=g) * var.sqrt(), k=15)
    assert honest.source == "own" and honest.describe() == "own"
    test = Prediction(mean=torch.zeros(5), var=torch.arange(1.0, 6.0), embedding=torch.zeros(5, 3))
    assert torch.allclose(honest.variance(test), honest.scale * test.var)
    # the same noise everywhere and 50 validation molecules with k = 2: not the raw local mean
    flat = Prediction(mean=torch.zeros(50), var=torch.ones(50), embedding=torch.randn(50, 3))
    few = NeighbourCalibration(flat, torch.randn(50, generator=g), k=2)
    assert (few.source, few.prior) != ("local", 0.0)
    assert few.validation_nll[few.chosen] == min(few.validation_nll.values())


def test_a_saved_calibration_gives_the_same_variance():
    g = torch.Generator().manual_seed(3)
    val, val_y = _clustered(100, g)
    test, _ = _clustered(30, g)
    for k in (2, 10):
        calibration = NeighbourCalibration(val, val_y, k=k)
        again = NeighbourCalibration.from_state(calibration.state())
        assert again.describe() == calibration.describe()
        assert torch.equal(again.variance(test), calibration.variance(test))
        assert torch.equal(again.validation_variance(), calibration.validation_variance())
