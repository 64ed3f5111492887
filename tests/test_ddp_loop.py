"""The active-learning loop under a DDP Trainer of 2 CPU processes (gloo), through the command.

Lightning starts rank 1 by re-running ``python -m regal_torch.run ...``; only rank 0 locks and
writes the folder and selects, rank 1 takes its picks. Slow: each command starts 2 processes.
"""

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from regal_torch.loop.state import read_state

DDP2 = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "progress=false"]


def _run(tiny, *extra):
    command = [sys.executable, "-m", "regal_torch.run", *tiny, *DDP2, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_two_process_run_writes_once_resumes_and_refuses_multirun(tiny, tmp_path):
    run_dir = tmp_path / "run"
    first = _run(tiny, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    # one process reports: each round's line once
    lines = [line for line in first.stdout.splitlines() if line.startswith("round ")]
    assert [line.split(" |")[0] for line in lines] == ["round 0/2", "round 1/2", "round 2/2"]
    history = pd.read_csv(run_dir / "history.csv")
    selected = pd.read_csv(run_dir / "selected.csv")
    assert history["n_labeled"].tolist() == [20, 30, 40]
    assert selected.groupby("round").size().tolist() == [20, 10, 10]
    assert selected["position"].is_unique
    state = read_state(run_dir / "state.pt")
    assert torch.equal(state["labeled"], torch.tensor(selected["position"].to_numpy()))
    assert (run_dir / ".hydra" / "config.yaml").is_file()

    # the resume (both processes read the state) redoes the last round as it was, then goes on
    more = _run(tiny, f"hydra.run.dir={run_dir}", "loop.rounds=3")
    assert more.returncode == 0, more.stderr[-3000:]
    extended = pd.read_csv(run_dir / "history.csv")
    assert extended["n_labeled"].tolist() == [20, 30, 40, 50]
    assert extended["test_mae"].iloc[2] == pytest.approx(history["test_mae"].iloc[2], abs=1e-6)
    again = pd.read_csv(run_dir / "selected.csv")
    assert again["position"].iloc[:40].tolist() == selected["position"].tolist()

    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "regal_torch.run",
            "--multirun",
            *tiny,
            *DDP2,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "--multirun with a Trainer of 2 processes" in sweep.stderr
    assert not list((tmp_path / "sweep").rglob("selected.csv"))


@pytest.mark.slow
def test_sigterm_to_the_first_process_stops_both_and_the_run_resumes(tiny, tmp_path):
    """SLURM preemption or kill: Lightning forwards the signal to rank 1; both stop in the
    round under way with the one-line error, and the same command resumes the run.

    Lightning's handler broadcasts from inside the signal handler: on a machine at load 3+ on
    2 cores this test hung once in three tries (README, "Several GPUs")."""
    run_dir = tmp_path / "run"
    long = [*tiny, *DDP2, "trainer.max_epochs=300", f"hydra.run.dir={run_dir}"]
    command = [sys.executable, "-m", "regal_torch.run", *long]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # written once both processes have connected and round 0's training begins
    started = run_dir / "logs" / "round_000" / "hparams.yaml"
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2
    assert stderr.count("stopped by SIGTERM during round 0") == 2  # each process says so
    assert not subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True).stdout
    assert not (run_dir / "state.pt").exists()  # round 0 was not recorded half-trained
    resumed = _run(tiny, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pd.read_csv(run_dir / "history.csv")["n_labeled"].tolist() == [20, 30, 40]
