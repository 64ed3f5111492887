"""Round progress (lines always, bars on a terminal) and the Lightning loggers of a run."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import compose_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.quiet import show_progress


def test_csv_logger_matches_history_and_survives_an_extension(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "loop.rounds=1"]), tmp_path).run()
    ActiveLoop(compose_config(tiny), tmp_path).run()  # resume: one more round
    history = pd.read_csv(tmp_path / "history.csv")
    logged = pd.read_csv(tmp_path / "logs" / "rounds" / "metrics.csv")
    assert len(logged) == len(history) == 3  # rewritten on resume, no duplicate rows
    assert logged["step"].tolist() == history["n_labeled"].tolist()
    pd.testing.assert_series_equal(logged["test_mae"], history["test_mae"])
    assert "seed" in (tmp_path / "logs" / "rounds" / "hparams.yaml").read_text()
    for r in range(3):  # each round's Trainer logged its own curves
        curves = pd.read_csv(tmp_path / "logs" / f"round_{r:03d}" / "metrics.csv")
        assert "val/mae" in curves.columns and curves["val/mae"].notna().any()


def test_tensorboard_logger_writes_readable_scalars(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "logger=tensorboard"]), tmp_path).run()
    events = EventAccumulator(str(tmp_path / "logs" / "rounds"))
    events.Reload()
    scalars = events.Scalars("test_mae")
    history = pd.read_csv(tmp_path / "history.csv")
    assert [s.step for s in scalars] == history["n_labeled"].tolist()
    assert [s.value for s in scalars] == pytest.approx(history["test_mae"].tolist(), rel=1e-6)


def test_logger_none_writes_no_logs(tiny, tmp_path):
    ActiveLoop(compose_config([*tiny, "logger=none"]), tmp_path).run()
    assert (tmp_path / "history.csv").exists()
    assert not (tmp_path / "logs").exists()


def _run(tiny, tmp_path, *extra):
    cmd = [sys.executable, "-m", "regal_torch.run", *tiny, f"hydra.run.dir={tmp_path}", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_progress_lines_always_bars_only_when_asked(tiny, tmp_path):
    quiet = _run(tiny, tmp_path / "auto")  # stderr is a pipe here, not a terminal
    lines = [line for line in quiet.stdout.splitlines() if line.startswith("round ")]
    assert len(lines) == 3
    assert all("elapsed" in line for line in lines)
    assert "left ~" in lines[0] and "left ~" not in lines[-1]
    assert "rounds:" not in quiet.stderr and "Epoch" not in quiet.stdout + quiet.stderr

    shown = _run(tiny, tmp_path / "bars", "progress=true")
    assert "rounds: 100%" in shown.stderr and "test MAE" in shown.stderr
    assert "Epoch 1" in shown.stdout  # Lightning's epoch bar (on stdout) under the round bar
    assert sum(line.startswith("round ") for line in shown.stdout.split("\n")) == 3


def test_progress_setting_is_checked():
    assert show_progress(True) and not show_progress(False)
    with pytest.raises(RegalError, match="progress must be"):
        show_progress("sometimes")
