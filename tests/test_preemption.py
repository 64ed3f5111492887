"""The path a requeued job takes: killed by a signal mid-run, relaunched, resumes in place."""

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

TIMINGS = ["seconds_train", "seconds_test", "seconds_predict", "seconds_select"]


@pytest.fixture
def launched():
    """The runs a test starts; any still alive when it ends (a failed test) are killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sweep(tiny, cwd, launched):
    cmd = [
        sys.executable,
        "-m",
        "regal_torch.run",
        "--multirun",
        *tiny,
        "loop.rounds=3",
        "trainer.max_epochs=200",
        "seed=0",
        "hydra.job.config.override_dirname.exclude_keys=[data.dataset.root]",
    ]
    # Output goes to files: a pipe nobody reads fills up and blocks the run.
    n = len(list(cwd.glob("out*.txt")))
    out, err = open(cwd / f"out{n}.txt", "w"), open(cwd / f"err{n}.txt", "w")
    launched.append(subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True))
    return launched[-1]


def _job_dir(cwd):
    (job,) = [p.parent for p in (cwd / "multirun").rglob("history.csv")]
    return job


def test_sigterm_then_relaunch_resumes_in_the_same_folder(tiny, tmp_path, launched):
    whole, preempted = tmp_path / "whole", tmp_path / "preempted"
    whole.mkdir(), preempted.mkdir()
    assert _sweep(tiny, whole, launched).wait(timeout=300) == 0

    job = _sweep(tiny, preempted, launched)  # the default sweep folder: stable, no date in it
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for round 1 to be checkpointed, then preempt
        history = list((preempted / "multirun").rglob("history.csv"))
        if history and len(pd.read_csv(history[0])) >= 2:  # written atomically: never partial
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) != 0
    rounds_done = len(pd.read_csv(_job_dir(preempted) / "history.csv"))
    assert 2 <= rounds_done < 4

    relaunch = _sweep(tiny, preempted, launched)
    assert relaunch.wait(timeout=300) == 0, (preempted / "err1.txt").read_text()[-2000:]
    out = (preempted / "out1.txt").read_text()
    assert out.count("round ") == 4 - rounds_done  # only the unfinished rounds ran
    got, want = _job_dir(preempted), _job_dir(whole)
    assert got.relative_to(preempted) == want.relative_to(whole)
    for name in ("history.csv", "selected.csv"):
        a = pd.read_csv(got / name).drop(columns=TIMINGS, errors="ignore")
        b = pd.read_csv(want / name).drop(columns=TIMINGS, errors="ignore")
        pd.testing.assert_frame_equal(a, b)
