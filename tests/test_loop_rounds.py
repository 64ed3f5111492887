"""The loop's structure: a constructor that touches no file, rounds that return their result,
a redone round's row replacing the old one, the target's unit in history.csv, and SIGTERM
honoured after any Trainer call."""

import os
import signal

import pandas as pd
import pytest
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.models.mc_dropout import MCDropoutRegressor


def test_the_constructor_touches_no_file(tiny, tmp_path):
    run_dir = tmp_path / "run"
    loop = ActiveLoop(compose_config(tiny), run_dir)
    assert not run_dir.exists() and loop.next_round is None
    loop.open()
    assert run_dir.is_dir() and loop.next_round == 0 and len(loop.dm.labeled) == 20
    assert not (run_dir / "state.pt").exists()  # nothing recorded before a round is done


def test_a_round_returns_its_row_and_writes_nothing(tiny, tmp_path):
    loop = ActiveLoop(compose_config(tiny), tmp_path).open()
    row = loop._round(0, acquire=True)
    assert row["round"] == 0 and row["n_labeled"] == 20 and row["seconds_predict"] >= 0
    assert {"test_mae", "test_rmse", "var_scale", "seconds_train"} <= set(row)
    assert len(loop.dm.labeled) == 30  # the picks are labeled ...
    assert loop.history == []  # ... but nothing is recorded (Lightning's logs/ aside)
    assert {p.name for p in tmp_path.iterdir()} <= {"logs"}


def test_extending_a_finished_run_replaces_its_last_row(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "loop.rounds=1"]), tmp_path).run()
    before = pd.read_csv(tmp_path / "history.csv")
    assert before["seconds_predict"].isna().tolist() == [False, True]  # round 1 picked nothing
    ActiveLoop(compose_config(tiny), tmp_path).run()
    after = pd.read_csv(tmp_path / "history.csv")
    # round 1 was redone to pick: its row is the redone one, with the same (seeded) metrics
    assert after["seconds_predict"].isna().tolist() == [False, False, True]
    assert after["test_mae"][1] == pytest.approx(before["test_mae"][1], rel=1e-6)


def test_history_records_the_targets_unit(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "loop.rounds=0"]), tmp_path).run()
    assert pd.read_csv(tmp_path / "history.csv")["unit"].tolist() == ["eV"]


def test_sigterm_at_the_end_of_training_stops_the_run(tiny, tmp_path, monkeypatch):
    """A SIGTERM that arrives after the last training batch (where DKL conditions its GP)
    is not lost to the next trainer.predict: the round is dropped, the run stops."""

    def terminated_at_train_end(self):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(MCDropoutRegressor, "on_train_end", terminated_at_train_end)
    with pytest.raises(RegalError, match="stopped by SIGTERM during round 0"):
        ActiveLoop(compose_config(tiny), tmp_path).run()
    assert not (tmp_path / "history.csv").exists() and not (tmp_path / "state.pt").exists()
