"""Strategies on hand-made predictions, where the right picks are known."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction
from regal_torch.run import CONFIG_DIR
from regal_torch.strategies.covariance import CovarianceStrategy
from regal_torch.strategies.random import RandomStrategy
from regal_torch.strategies.uncertainty import UncertaintyStrategy

# Every strategy option, with its configured defaults.
STRATEGIES = [
    instantiate(compose_config([f"strategy={path.stem}"]).strategy)
    for path in sorted((Path(CONFIG_DIR) / "strategy").glob("*.yaml"))
]


def _context(pool, labeled=(), seed=0, labeled_prediction=None, labeled_targets=None):
    from regal_torch.strategies.base import SelectionContext

    return SelectionContext(
        pool=torch.as_tensor(pool),
        labeled=torch.as_tensor(labeled, dtype=torch.long),
        generator=torch.Generator().manual_seed(seed),
        labeled_prediction=labeled_prediction,
        labeled_targets=labeled_targets,
    )


def _prediction(var):
    var = torch.as_tensor(var, dtype=torch.float)
    return Prediction(mean=torch.zeros_like(var), var=var)


def test_uncertainty_picks_largest_variances_in_order():
    pool = [10, 11, 12, 13, 14]
    picks = UncertaintyStrategy().select(_prediction([0.1, 5.0, 0.3, 2.0, 0.2]), 2, _context(pool))
    assert picks.tolist() == [11, 13]


def test_uncertainty_breaks_ties_by_pool_order():
    picks = UncertaintyStrategy().select(
        _prediction([1.0, 3.0, 3.0, 3.0]), 2, _context([5, 6, 7, 8])
    )
    assert picks.tolist() == [6, 7]


def _full_prediction(n, generator):
    """Mean, var, samples, embedding and gradients for ``n`` molecules, with duplicated rows."""
    samples = torch.randn(6, n, generator=generator)
    samples[:, 1::5] = samples[:, ::5]  # every fifth molecule has a twin
    embedding = torch.randn(n, 8, generator=generator)
    embedding[1::5] = embedding[::5]
    gradients = torch.randn(n, 12, generator=generator)
    gradients[1::5] = gradients[::5]
    return Prediction(samples.mean(0), samples.var(0), samples, embedding, gradients=gradients)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: f"{type(s).__name__}-{vars(s)}")
@pytest.mark.parametrize("k", [17, 100])
def test_invariants(strategy, k):
    generator = torch.Generator().manual_seed(1)
    pool = torch.arange(100, 300, 2)
    labeled = torch.arange(0, 100)
    pred = _full_prediction(len(pool), generator)
    on_labeled = _full_prediction(len(labeled), generator)
    targets = on_labeled.mean + 0.1

    def select(seed):
        return strategy.select(pred, k, _context(pool, labeled, seed, on_labeled, targets))

    picks = select(3)
    assert picks.numel() == k and picks.unique().numel() == k
    assert torch.isin(picks, pool).all() and not torch.isin(picks, labeled).any()
    assert torch.equal(picks, select(3))


def test_random_depends_on_seed_and_is_uniform():
    pool = torch.arange(1000)
    pred = _prediction(torch.ones(1000))
    a = RandomStrategy().select(pred, 50, _context(pool, seed=0))
    b = RandomStrategy().select(pred, 50, _context(pool, seed=1))
    assert not torch.equal(a, b)
    counts = torch.zeros(10)
    for seed in range(200):
        counts += torch.bincount(
            RandomStrategy().select(pred, 50, _context(pool, seed=seed)) // 100, minlength=10
        )
    assert counts.min() > 0.8 * counts.mean()


@pytest.mark.parametrize("k", [0, 6])
def test_batch_size_outside_pool_is_a_clear_error(k):
    with pytest.raises(RegalError, match="loop.batch_size"):
        RandomStrategy().select(_prediction(torch.ones(5)), k, _context(range(5)))


def test_missing_prediction_field_is_named():
    class NeedsSamples(UncertaintyStrategy):
        requires = ("samples",)

    with pytest.raises(RegalError, match="Prediction.samples"):
        NeedsSamples().select(_prediction(torch.ones(5)), 2, _context(range(5)))


def test_prediction_checks_shapes_and_selects_rows():
    pred = Prediction(
        mean=torch.arange(4.0), var=torch.ones(4), samples=torch.zeros(3, 4), embedding=torch.eye(4)
    )
    sub = pred.index_select(torch.tensor([3, 1]))
    assert sub.mean.tolist() == [3.0, 1.0] and sub.samples.shape == (3, 2)
    assert torch.equal(sub.embedding, torch.eye(4)[[3, 1]])
    full = torch.randn(4, 4)
    with_cov = Prediction(
        mean=torch.zeros(4), var=torch.ones(4), covariance=lambda r, c: full[r][:, c]
    )
    picked = with_cov.index_select(torch.tensor([2, 0]))
    assert torch.equal(
        picked.covariance(torch.tensor([0, 1]), torch.tensor([1])), full[[2, 0]][:, [0]]
    )
    with pytest.raises(ValueError, match="samples"):
        Prediction(mean=torch.zeros(4), var=torch.ones(4), samples=torch.zeros(4, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: f"{type(s).__name__}-{vars(s)}")
def test_strategies_run_on_the_prediction_device(strategy):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    generator = torch.Generator().manual_seed(1)
    pool, labeled = torch.arange(100, 2100), torch.arange(0, 100)
    pred, on_labeled = _full_prediction(len(pool), generator), _full_prediction(100, generator)
    targets = on_labeled.mean + 0.1
    cuda = [p.index_select(torch.arange(len(p))) for p in (pred, on_labeled)]
    for p in cuda:
        for name in ("mean", "var", "samples", "embedding"):
            setattr(p, name, getattr(p, name).cuda())
    on_cpu = strategy.select(pred, 50, _context(pool, labeled, 3, on_labeled, targets))
    on_gpu = strategy.select(cuda[0], 50, _context(pool, labeled, 3, cuda[1], targets.cuda()))
    assert on_gpu.unique().numel() == 50 and torch.isin(on_gpu.cpu(), pool).all()
    if not isinstance(strategy, RandomStrategy):
        assert torch.isin(on_gpu.cpu(), on_cpu).float().mean() >= 0.9


HALF = [
    instantiate(compose_config([f"strategy={path.stem}", "strategy.half_features=true"]).strategy)
    for path in sorted((Path(CONFIG_DIR) / "strategy").glob("*.yaml"))
    if "half_features" in compose_config([f"strategy={path.stem}"]).strategy
] + [CovarianceStrategy(source="embedding", half_features=True)]


@pytest.mark.parametrize("strategy", HALF, ids=lambda s: f"{type(s).__name__}-{vars(s)}")
def test_half_features_pick_as_float32_on_the_rounded_features(strategy):
    """Features stored as float16 are computed in float32 (blocks of rows; the pool is larger
    than one block), so the picks are those of float32 features holding the same values."""
    generator = torch.Generator().manual_seed(2)
    pool, labeled = torch.arange(100, 8400), torch.arange(0, 100)
    rounded = []
    for n in (len(pool), len(labeled)):
        pred = _full_prediction(n, generator)
        pred.embedding, pred.gradients = pred.embedding.half(), pred.gradients.half()
        rounded.append(pred)
    full = [
        replace(p, embedding=p.embedding.float(), gradients=p.gradients.float()) for p in rounded
    ]
    assert strategy.request().half_features
    targets = full[1].mean + 0.1
    picks = [
        strategy.select(p, 20, _context(pool, labeled, 3, on_labeled, targets))
        for p, on_labeled in (rounded, full)
    ]
    assert torch.equal(picks[0], picks[1])
