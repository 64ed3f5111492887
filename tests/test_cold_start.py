"""loop/initial_strategy: the initial labeled set picked before any label."""

import pytest
import torch
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.loop.seeds import INITIAL, round_seed
from regal_torch.models.tanimoto import morgan_fingerprints


def _initial(tiny, tmp_path, *extra):
    loop = ActiveLoop(compose_config([*tiny, *extra]), tmp_path).open()
    return loop, loop.dm.labeled[loop.labels.label_rounds == 0]


def test_random_draws_the_set_it_always_drew(tiny, tmp_path):
    loop, initial = _initial(tiny, tmp_path)
    generator = torch.Generator().manual_seed(round_seed(0, 0, INITIAL))
    # the pool before labeling: every position that is neither test nor val
    everyone = torch.arange(len(loop.dataset))
    held_out = torch.cat([loop.dm.test, loop.dm.val])
    pool = everyone[~torch.isin(everyone, held_out)]
    want = pool[torch.randperm(len(pool), generator=generator)[:20]]
    assert torch.equal(initial, want)


def _min_pairwise_distance(features: torch.Tensor) -> float:
    distance = torch.cdist(features, features)
    distance.fill_diagonal_(float("inf"))
    return distance.min().item()


def test_maxdist_on_fingerprints_spreads_the_initial_set(tiny, tmp_path):
    loop, spread = _initial(
        tiny, tmp_path / "a", "loop/initial_strategy=maxdist", "loop.initial_features=fingerprint"
    )
    _, random = _initial(tiny, tmp_path / "b")
    fps = morgan_fingerprints(list(loop.dataset.smiles))
    assert len(spread) == 20 and spread.unique().numel() == 20
    assert not torch.isin(spread, torch.cat([loop.dm.test, loop.dm.val])).any()
    assert _min_pairwise_distance(fps[spread]) > _min_pairwise_distance(fps[random])


def test_kmeanspp_on_the_untrained_model_is_seeded(tiny, tmp_path):
    extra = ["loop/initial_strategy=kmeanspp"]
    _, first = _initial(tiny, tmp_path / "a", *extra)
    _, again = _initial(tiny, tmp_path / "b", *extra)
    _, other_seed = _initial(tiny, tmp_path / "c", *extra, "seed=1")
    _, random = _initial(tiny, tmp_path / "d")
    assert torch.equal(first, again)
    assert not torch.equal(first, other_seed) and not torch.equal(first, random)


def test_the_initial_strategy_is_part_of_the_run(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "loop.rounds=0"]), tmp_path).run()
    with pytest.raises(RegalError, match="initial_strategy"):
        ActiveLoop(compose_config([*tiny, "loop/initial_strategy=lcmd"]), tmp_path).open()


def test_a_gp_needs_fingerprint_features(tiny, tmp_path):
    gp = [o for o in tiny if not o.startswith("model.")] + [
        "model=gp",
        "loop/initial_strategy=lcmd",
    ]
    with pytest.raises(RegalError, match="initial_features=fingerprint"):
        ActiveLoop(compose_config(gp), tmp_path).open()
    loop = ActiveLoop(
        compose_config([*gp, "loop.initial_features=fingerprint"]), tmp_path / "fp"
    ).open()
    assert len(loop.dm.labeled) == 20


def test_sigterm_while_picking_the_initial_set_stops_the_run(tiny, tmp_path, monkeypatch):
    import os
    import signal

    from regal_torch.models.mc_dropout import MCDropoutRegressor

    original = MCDropoutRegressor.predict_step

    def terminated(self, batch, batch_idx=0):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MCDropoutRegressor, "predict_step", terminated)
    loop = ActiveLoop(compose_config([*tiny, "loop/initial_strategy=kmeanspp"]), tmp_path)
    with pytest.raises(RegalError, match="SIGTERM while picking the initial set"):
        loop.open()
    assert not (tmp_path / "state.pt").exists()
