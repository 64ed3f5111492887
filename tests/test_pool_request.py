"""The loop asks the model for what the strategy uses and no more: no pool prediction for
random, one deterministic pass for the diversity methods, gradient sketches for kernel=grad;
and the prediction keeps only that, streamed batch by batch into its buffers."""

from dataclasses import replace

import pytest
import torch
from conftest import compose_config, quiet_trainer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.loop.seeds import CANDIDATES, round_seed
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.lcmd import LCMDStrategy


@pytest.fixture
def requests_seen(monkeypatch: pytest.MonkeyPatch) -> list:
    """``(number of molecules, request)`` of every batch the MC-dropout model predicts."""
    seen = []
    original = MCDropoutRegressor.predict_step

    def spy(self, batch, batch_idx=0):
        seen.append((batch.num_graphs, self.prediction_request))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MCDropoutRegressor, "predict_step", spy)
    return seen


def _run(tiny, tmp_path, strategy: str, *extra: str) -> ActiveLoop:
    loop = ActiveLoop(compose_config([*tiny, f"strategy={strategy}", *extra]), tmp_path)
    loop.run()
    return loop


def test_random_predicts_no_pool(tiny, tmp_path, requests_seen):
    # (predict.outputs=false: no predictions.csv, whose prediction covers every molecule)
    loop = _run(tiny, tmp_path, "random", "predict.outputs=false")
    predicted = sum(n for n, _ in requests_seen)
    rounds = len(loop.history)
    # test (50) and val (20) molecules each round, nothing else
    assert predicted == rounds * (50 + 20)
    assert all(request.uncertainty for _, request in requests_seen)


def test_lcmd_predicts_the_pool_once_without_dropout(tiny, tmp_path, requests_seen):
    loop = _run(tiny, tmp_path, "lcmd")
    cheap = [(n, r) for n, r in requests_seen if not r.uncertainty]
    # pool (final pool + 20, then + 10) and labeled set (20, then 30) in each of the 2
    # acquisition rounds, without MC samples
    final_pool = len(loop.dm.pool)
    assert sum(n for n, _ in cheap) == (final_pool + 20) + 20 + (final_pool + 10) + 30
    assert all(r.fields == frozenset({"embedding"}) for _, r in cheap)


def test_grad_kernel_runs_end_to_end_with_one_sketch_per_round(tiny, tmp_path, requests_seen):
    loop = _run(tiny, tmp_path, "lcmd_grad", "strategy.sketch_dim=32")
    assert len(loop.history) == 3 and len(loop.dm.labeled) == 20 + 2 * 10
    sketched = [r for _, r in requests_seen if r.wants("gradients")]
    assert sketched and all(r.sketch_dim == 32 for r in sketched)
    # pool and labeled set of one round share the sketch; rounds draw their own
    assert len({r.sketch_seed for r in sketched}) == 2


def test_grad_picks_differ_from_ll_picks(tiny, tmp_path):
    ll = _run(tiny, tmp_path / "ll", "maxdist")
    grad = _run(tiny, tmp_path / "grad", "maxdist_grad")
    initial = ll.labels.label_rounds == 0
    assert torch.equal(ll.dm.labeled[initial], grad.dm.labeled[grad.labels.label_rounds == 0])
    assert not torch.equal(ll.dm.labeled, grad.dm.labeled)


def test_a_model_without_gradients_is_a_clear_error(tiny, tmp_path):
    from regal_torch.errors import RegalError

    overrides = [o for o in tiny if not o.startswith("model.")]
    config = compose_config([*overrides, "strategy=lcmd_grad", "model=gp"])
    with pytest.raises(RegalError, match="Prediction.gradients"):
        ActiveLoop(config, tmp_path).run()


def test_candidates_limit_what_is_predicted_and_picked(tiny, tmp_path, requests_seen):
    loop = _run(tiny, tmp_path, "lcmd", "loop.candidates=40")
    cheap = [n for n, r in requests_seen if not r.uncertainty]
    # 40 candidates and the labeled set (20, then 30) in each acquisition round
    assert sum(cheap) == 40 + 20 + 40 + 30
    subsets = []
    for r in (0, 1):  # round r's pool: the final pool and what rounds after r labeled
        later = loop.dm.labeled[loop.labels.label_rounds > r]
        pool = torch.cat([loop.dm.pool, later]).sort().values
        generator = torch.Generator().manual_seed(round_seed(0, r, CANDIDATES))
        candidates = pool[torch.randperm(len(pool), generator=generator)[:40]]
        assert torch.isin(loop.dm.labeled[loop.labels.label_rounds == r + 1], candidates).all()
        subsets.append(set(candidates.tolist()))
    assert subsets[0] != subsets[1]  # a fresh subset each round


def test_candidates_below_the_batch_size_are_refused(tiny, tmp_path):
    from regal_torch.errors import RegalError

    with pytest.raises(RegalError, match="loop.candidates"):
        _run(tiny, tmp_path, "lcmd", "loop.candidates=5")


def test_a_candidate_limit_of_at_least_the_pool_resumes_a_run_without_one(tiny, tmp_path):
    """loop.candidates >= the pool does what null does, so a run started with either resumes
    under the other; a limit below the pool changes the picks and is refused."""
    from regal_torch.errors import RegalError

    first = _run(tiny, tmp_path, "lcmd", "loop.candidates=null")
    cfg = compose_config([*tiny, "strategy=lcmd", "loop.candidates=100000"])
    resumed = ActiveLoop(cfg, tmp_path).open()
    assert resumed.next_round == len(first.history)
    assert [row["test_mae"] for row in resumed.history] == [r["test_mae"] for r in first.history]
    with pytest.raises(RegalError, match="loop.candidates: state has None, config has 40"):
        ActiveLoop(compose_config([*tiny, "strategy=lcmd", "loop.candidates=40"]), tmp_path).open()


def test_streamed_scoring_keeps_what_is_asked_and_picks_as_in_memory(qm9_small):
    """predict() writes batches into per-field buffers (Lightning keeps no list of them) and
    gives the rows and LCMD picks that joining every batch's own prediction gives."""
    dm = ActiveDataModule(qm9_small, "gap", val_size=0, test_size=0, predict_batch_size=16)
    torch.manual_seed(0)
    model = EnsembleRegressor(qm9_small.num_node_features, qm9_small.num_edge_features, 2, 16)
    model.set_target_scaling(5.0, 2.0)
    trainer = quiet_trainer(1)
    labeled, pool = dm.pool[:20], dm.pool[20:120]
    strategy = LCMDStrategy()
    request = strategy.request()
    streamed = predict(trainer, model, dm.loader(pool), request)
    assert trainer.predict_loop.predictions == []
    # the ensemble gives samples and variance too; only the asked-for fields are kept
    assert streamed.samples is None and streamed.var is None
    batches = trainer.predict(model, dm.loader(pool))  # in memory: every batch, then joined
    for name in ("mean", "embedding"):
        assert torch.equal(getattr(streamed, name), torch.cat([getattr(b, name) for b in batches]))
    context = SelectionContext(
        pool=pool,
        labeled=labeled,
        generator=torch.Generator().manual_seed(0),
        labeled_prediction=predict(trainer, model, dm.loader(labeled), request),
        labeled_targets=dm.truth[labeled],
    )
    joined = Prediction(mean=streamed.mean, embedding=torch.cat([b.embedding for b in batches]))
    assert torch.equal(strategy.select(streamed, 10, context), strategy.select(joined, 10, context))
    # half_features: the same embedding, stored as float16
    half = predict(trainer, model, dm.loader(pool), replace(request, half_features=True))
    assert half.embedding.dtype == torch.float16 and half.mean.dtype == torch.float32
    assert torch.equal(half.embedding, streamed.embedding.half())
