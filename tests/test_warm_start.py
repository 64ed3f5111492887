"""loop.warm_start: each round continues from the previous weights, also across a resume."""

import pandas as pd
import pytest
import torch
from conftest import compose_config as _cfg

from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.loop.state import read_state


@pytest.fixture(scope="module")
def warm(tiny):
    return [*tiny, "loop.warm_start=true"]


def _history(run_dir):
    return pd.read_csv(run_dir / "history.csv").filter(regex="^(round|n_labeled|test_|var_)")


def test_warm_start_differs_from_cold_and_resumes_exactly(warm, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    ActiveLoop(_cfg(warm), straight).run()
    weights = read_state(straight / "state.pt")["weights"]
    assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())

    cold = tmp_path / "cold"
    ActiveLoop(_cfg([*warm[:-1], "loop.warm_start=false", "loop.rounds=1"]), cold).run()
    got, want = _history(straight), _history(cold)
    pd.testing.assert_frame_equal(got.iloc[:1], want.iloc[:1])  # round 0 starts cold
    assert got.loc[1, "test_mae"] != want.loc[1, "test_mae"]

    original = ActiveLoop._round

    def dies_in_round_2(self, r, acquire):
        if r == 2:
            raise KeyboardInterrupt
        return original(self, r, acquire)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(ActiveLoop, "_round", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        ActiveLoop(_cfg(warm), resumed).run()
    monkeypatch.undo()
    ActiveLoop(_cfg(warm), resumed).run()
    pd.testing.assert_frame_equal(_history(resumed), _history(straight))
