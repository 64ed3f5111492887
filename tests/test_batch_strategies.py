"""Batch strategies on hand-made predictions with known answers, against brute force, and in
the real loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.models.prediction import Prediction
from regal_torch.run import CONFIG_DIR
from regal_torch.strategies.bait import BaitStrategy
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.covariance import CovarianceStrategy
from regal_torch.strategies.features import kernel_features, posterior_features
from regal_torch.strategies.fft import FarthestFirstStrategy
from regal_torch.strategies.gsx import GreedySamplingXStrategy
from regal_torch.strategies.gsy import GreedySamplingYStrategy
from regal_torch.strategies.igs import ImprovedGreedySamplingStrategy
from regal_torch.strategies.kmeanspp import KMeansPPStrategy
from regal_torch.strategies.lcmd import LCMDStrategy
from regal_torch.strategies.maxdist import MaxDistStrategy
from regal_torch.strategies.qbc import QueryByCommitteeStrategy
from regal_torch.strategies.uncertainty import UncertaintyStrategy


def _pred(embedding=None, mean=None, var=None, samples=None, covariance=None):
    embedding = None if embedding is None else torch.as_tensor(embedding, dtype=torch.float)
    n = len(embedding) if embedding is not None else len(mean if mean is not None else var)
    mean = torch.zeros(n) if mean is None else torch.as_tensor(mean, dtype=torch.float)
    var = torch.ones(n) if var is None else torch.as_tensor(var, dtype=torch.float)
    return Prediction(mean, var, samples, embedding, covariance)


def _ctx(n, labeled=None, targets=None, seed=0):
    """Context of a pool of ``n`` (positions 100..), a labeled set with prediction ``labeled``
    and labels ``targets`` (positions 0..)."""
    size = len(labeled) if labeled is not None else len(targets or ())
    return SelectionContext(
        pool=torch.arange(100, 100 + n),
        labeled=torch.arange(size),
        generator=torch.Generator().manual_seed(seed),
        labeled_prediction=labeled,
        labeled_targets=None if targets is None else torch.as_tensor(targets, dtype=torch.float),
    )


def _rows(picks):
    return (picks - 100).tolist()


# --- covariance -------------------------------------------------------------------------


def test_covariance_skips_the_duplicate_of_a_high_variance_pick():
    samples = torch.tensor([[3.0, 3.0, 1.0, 0.1], [-3.0, -3.0, -1.0, -0.1], [0, 0, 1, 0.2]])
    pred = _pred(var=samples.var(0), samples=samples)
    assert _rows(UncertaintyStrategy().select(pred, 2, _ctx(4))) == [0, 1]
    assert _rows(CovarianceStrategy(source="samples").select(pred, 2, _ctx(4))) == [0, 2]


def test_covariance_uses_the_gp_provider_in_columns_only():
    full = torch.tensor([[4.0, 3.9, 0.0], [3.9, 4.0, 0.0], [0.0, 0.0, 1.0]])
    calls = []

    def covariance(rows, cols):
        calls.append((len(rows), len(cols)))
        return full[rows][:, cols]

    # Samples say 0 and 1 are independent; auto must prefer the GP's covariance.
    samples = torch.tensor([[2.0, 0.0, 1.0], [-2.0, 0.0, -1.0], [0.0, 2.0, 0.0], [0.0, -2.0, 0]])
    pred = _pred(var=full.diag(), samples=samples, covariance=covariance)
    assert _rows(CovarianceStrategy().select(pred, 2, _ctx(3))) == [0, 2]
    assert _rows(CovarianceStrategy(source="samples").select(pred, 2, _ctx(3))) == [0, 1]
    assert calls and all(shape == (3, 1) for shape in calls)


def _brute_force_max_det(kernel, sigma2, k):
    picks = []
    for _ in range(k):
        best = max(
            (i for i in range(len(kernel)) if i not in picks),
            key=lambda i: torch.logdet(
                kernel[[*picks, i]][:, [*picks, i]].double() + sigma2 * torch.eye(len(picks) + 1)
            ),
        )
        picks.append(best)
    return picks


def test_covariance_on_embedding_is_greedy_max_det_of_the_posterior():
    g = torch.Generator().manual_seed(0)
    pool, labeled = torch.randn(40, 6, generator=g), torch.randn(5, 6, generator=g)
    strategy = CovarianceStrategy(source="embedding", noise=0.05)
    picks = strategy.select(_pred(pool), 8, _ctx(40, _pred(labeled)))
    sigma2 = 0.05 * pool.square().sum(1).mean().item()
    full = torch.cat([pool, labeled]).double()
    gram = full @ full.T
    posterior = gram[:40, :40] - gram[:40, 40:] @ torch.linalg.solve(
        gram[40:, 40:] + sigma2 * torch.eye(5, dtype=torch.double), gram[40:, :40]
    )
    assert _rows(picks) == _brute_force_max_det(posterior, sigma2, 8)


def test_covariance_names_what_the_model_lacks():
    with pytest.raises(RegalError, match="Prediction.covariance"):
        CovarianceStrategy(source="gp").select(_pred(var=torch.ones(3)), 1, _ctx(3))
    with pytest.raises(RegalError, match="Prediction.covariance, Prediction.samples or"):
        CovarianceStrategy().select(_pred(var=torch.ones(3)), 1, _ctx(3))
    with pytest.raises(RegalError, match="source="):
        CovarianceStrategy(source="kernel")


# --- query by committee -----------------------------------------------------------------


def test_qbc_ranks_by_sample_disagreement_not_by_var():
    samples = torch.tensor([[0.0, 5.0, 1.0, 2.0], [0.0, -5.0, -1.0, -2.0]])
    pred = _pred(var=[9.0, 0.1, 0.2, 0.3], samples=samples)
    assert _rows(QueryByCommitteeStrategy().select(pred, 2, _ctx(4))) == [1, 3]


# --- distance based ---------------------------------------------------------------------


def test_fft_picks_the_farthest_point_then_the_farthest_from_both():
    pool = [[1.0, 0.0], [5.0, 0.0], [0.0, 3.0], [4.0, 0.5]]
    labeled = _pred([[0.0, 0.0]])
    for strategy in (FarthestFirstStrategy(), GreedySamplingXStrategy(), MaxDistStrategy()):
        assert _rows(strategy.select(_pred(pool), 2, _ctx(4, labeled))) == [1, 2]


def test_first_pick_on_an_empty_labeled_set():
    pool = _pred([[0.1, 0.1], [1.0, 1.0], [-1.0, -1.0], [2.5, -2.0], [-2.0, 2.0]])
    assert _rows(GreedySamplingXStrategy().select(pool, 1, _ctx(5))) == [0]  # near centroid
    assert _rows(MaxDistStrategy().select(pool, 1, _ctx(5))) == [3]  # largest norm
    firsts = {_rows(FarthestFirstStrategy().select(pool, 1, _ctx(5, seed=s)))[0] for s in range(30)}
    assert len(firsts) >= 4  # uniform


def test_kmeanspp_draws_in_proportion_to_squared_distance():
    pool = _pred([[1.0], [3.0], [0.0]])  # squared distances 1, 9, 0 from the labeled 0
    labeled = _pred([[0.0]])
    counts = torch.zeros(3)
    for seed in range(200):
        counts[_rows(KMeansPPStrategy().select(pool, 1, _ctx(3, labeled, seed=seed)))[0]] += 1
    assert counts[2] == 0 and 0.83 < counts[1] / 200 < 0.97


def test_lcmd_picks_the_farthest_member_of_the_largest_cluster():
    # Cluster of labeled 0 at x=0: many members at 1-2 (size 20 x 2.25 + ...); labeled 1 at
    # x=100 has one far member at 104 (squared distance 16, the largest single distance).
    near = [[1.0 + 0.05 * i] for i in range(20)]
    pool = _pred([*near, [104.0]])
    labeled = _pred([[0.0], [100.0]])
    assert _rows(MaxDistStrategy().select(pool, 1, _ctx(21, labeled))) == [20]
    assert _rows(LCMDStrategy().select(pool, 1, _ctx(21, labeled))) == [19]


# --- greedy sampling on outputs ---------------------------------------------------------


def test_gsy_picks_the_largest_output_distance_then_updates_with_its_prediction():
    # Distances to the nearest target: 0.5, 2.0, 2.2, 1.5; after picking row 2 (3.2), row 1
    # is 0.2 from its prediction.
    pred = _pred(mean=[0.5, 3.0, 3.2, -1.5], var=torch.ones(4))
    context = _ctx(4, targets=[0.0, 1.0])
    assert _rows(GreedySamplingYStrategy().select(pred, 2, context)) == [2, 3]


def test_igs_multiplies_input_and_output_distances():
    # Row 0 is far in x but has a labeled target's value; row 1 is moderate in both.
    pool = _pred([[10.0], [2.0], [0.5]], mean=[1.0, 3.0, 3.0])
    context = _ctx(3, _pred([[0.0]], mean=[0.0]), targets=[1.0])
    assert _rows(ImprovedGreedySamplingStrategy().select(pool, 1, context)) == [1]
    assert _rows(GreedySamplingXStrategy().select(pool, 1, context)) == [0]


def test_greedy_sampling_on_outputs_needs_labeled_targets():
    with pytest.raises(RegalError, match="labeled_targets"):
        GreedySamplingYStrategy().select(_pred(mean=[0.0, 1.0], var=[1.0, 1.0]), 1, _ctx(2))


# --- BAIT -------------------------------------------------------------------------------


def test_bait_matches_brute_force_on_the_posterior_kernel():
    g = torch.Generator().manual_seed(1)
    pool, labeled = torch.randn(30, 5, generator=g), torch.randn(4, 5, generator=g)
    picks = BaitStrategy(noise=0.1).select(_pred(pool), 6, _ctx(30, _pred(labeled)))
    sigma2 = 0.1 * pool.square().sum(1).mean().item()
    full = torch.cat([pool, labeled]).double()
    gram = full @ full.T
    kernel = gram - gram[:, 30:] @ torch.linalg.solve(
        gram[30:, 30:] + sigma2 * torch.eye(4, dtype=torch.double), gram[30:, :]
    )
    want = []
    for _ in range(6):
        score = (kernel[:, :30] ** 2).sum(0) / (kernel.diag()[:30] + sigma2)
        score[want] = -math.inf
        row = int(score.argmax())
        kernel = kernel - torch.outer(kernel[:, row], kernel[row]) / (kernel[row, row] + sigma2)
        want.append(row)
    assert _rows(picks) == want


# --- shared features --------------------------------------------------------------------


def test_posterior_features_give_the_gp_posterior_kernel():
    g = torch.Generator().manual_seed(2)
    pool, labeled = torch.randn(7, 4, generator=g).double(), torch.randn(3, 4, generator=g).double()
    psi, _ = posterior_features(pool, labeled, 0.3)
    k = pool @ pool.T - pool @ labeled.T @ torch.linalg.solve(
        labeled @ labeled.T + 0.3 * torch.eye(3, dtype=torch.double), labeled @ pool.T
    )
    torch.testing.assert_close(psi @ psi.T, k)


def test_sketch_keeps_distances_and_is_seeded():
    g = torch.Generator().manual_seed(3)
    pred = _pred(torch.randn(20, 8, generator=g))
    a, _ = kernel_features("t", pred, _ctx(20), sketch_dim=4096)
    b, _ = kernel_features("t", pred, _ctx(20), sketch_dim=4096)
    c, _ = kernel_features("t", pred, _ctx(20, seed=1), sketch_dim=4096)
    assert a.shape == (20, 4096) and torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(
        torch.cdist(a, a), torch.cdist(pred.embedding, pred.embedding), rtol=0.1, atol=0.1
    )


def test_distance_strategies_need_the_labeled_prediction():
    ctx = SelectionContext(torch.arange(3), torch.arange(2), torch.Generator())
    with pytest.raises(RegalError, match="SelectionContext.labeled_prediction"):
        LCMDStrategy().select(_pred([[0.0], [1.0], [2.0]]), 1, ctx)
    with pytest.raises(RegalError, match="Prediction.embedding"):
        BaitStrategy().select(_pred(var=[1.0, 1.0]), 1, _ctx(2))


# --- every strategy in the real loop ----------------------------------------------------

NEW = sorted(
    p.stem
    for p in (Path(CONFIG_DIR) / "strategy").glob("*.yaml")
    if p.stem not in ("random", "uncertainty")
)


@pytest.mark.parametrize("strategy", NEW)
def test_strategy_runs_in_the_loop(strategy, tiny, tmp_path):
    cfg = compose_config([*tiny, "loop.rounds=1", "trainer.max_epochs=1", f"strategy={strategy}"])
    loop = ActiveLoop(cfg, tmp_path)
    history = loop.run()
    assert [row["n_labeled"] for row in history] == [20, 30]
    assert loop.dm.labeled.unique().numel() == 30
