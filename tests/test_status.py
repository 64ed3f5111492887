"""``python -m regal_torch.status``: where a run stands, from its files alone."""

import subprocess
import sys

import pytest

from regal_torch.status import main


@pytest.fixture(scope="module")
def finished_run(tiny, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("status") / "run"
    overrides = [o for o in tiny if not o.startswith(("loop.rounds=", "trainer.max_epochs="))]
    cmd = [
        sys.executable,
        "-m",
        "regal_torch.run",
        *overrides,
        "loop.rounds=1",
        "trainer.max_epochs=1",
        "strategy=random",
        f"hydra.run.dir={run_dir}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return run_dir


def test_status_of_a_finished_run(finished_run, capsys):
    assert main([str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "data=qm9, model=mc_dropout, strategy=random, seed=0" in out
    assert "rounds finished: 2 of 2" in out and "labels so far: 30" in out
    assert "complete" in out


def test_status_of_an_unfinished_run(finished_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run / ".hydra", run_dir / ".hydra")
    assert main([str(run_dir)]) == 0
    assert "no round finished yet" in capsys.readouterr().out


def test_status_of_a_closed_loop_computing_its_labels(finished_run, tmp_path, capsys):
    import shutil

    import torch

    from regal_torch.loop.state import read_state, save_state

    run_dir = tmp_path / "closed"
    shutil.copytree(finished_run, run_dir)
    state = read_state(run_dir / "state.pt")
    state["pending"] = torch.arange(7)
    save_state(run_dir / "state.pt", state)
    assert main([str(run_dir)]) == 0
    assert "pending query: 7 molecules to label" in capsys.readouterr().out
    state["fingerprint"]["oracle_computes"] = True  # oracle=function or command
    save_state(run_dir / "state.pt", state)
    assert main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "computing: 7 molecules by the oracle" in out and "to label" not in out


def test_status_errors_are_one_line(finished_run, tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 2
    assert "not a regal_torch run directory" in capsys.readouterr().err
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(finished_run, broken)
    (broken / "state.pt").write_bytes(b"garbage")
    assert main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and err.count("\n") == 1
