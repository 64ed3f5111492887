"""The run folder around the loop: one process at a time, refused runs change nothing, errors
raised inside Hydra's instantiation read as our one line."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from regal_torch.errors import RegalError
from regal_torch.lock import RunLock
from regal_torch.status import main as status_main


def _run(args, cwd=None):
    cmd = [sys.executable, "-m", "regal_torch.run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def _snapshot(folder):
    """Every file's bytes and every entry's modification time under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in [folder, *sorted(folder.rglob("*"))]
    }


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A finished real run (strategy=random, 2 rounds) made by the command."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    out = _run([*tiny, "loop.rounds=1", "strategy=random", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    return run_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run, with a stale temporary file as a killed write leaves."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / ".state.pt.abc123.tmp").write_bytes(b"half a state")
    return run_dir


def test_a_second_process_is_refused_and_changes_nothing(tiny, run_copy):
    lock = RunLock(run_copy)
    lock.acquire()  # this test process holds the folder, as a running run would
    try:
        before = _snapshot(run_copy)
        out = _run([*tiny, "loop.rounds=2", "strategy=random", f"hydra.run.dir={run_copy}"])
        assert out.returncode == 2
        assert out.stderr == f"error: {run_copy} is in use by process {os.getpid()}\n"
        assert _snapshot(run_copy) == before
    finally:
        lock.release()


def test_a_run_holds_the_lock_while_it_runs(tiny, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "regal_torch.run", *tiny, "trainer.max_epochs=500"]
    err = tmp_path / "err.txt"
    with open(err, "w") as stderr:  # a pipe nobody reads could fill up and block the run
        run = subprocess.Popen(
            [*cmd, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.time() + 300
        while not (run_dir / ".hydra" / "config.yaml").exists():  # written once it runs
            assert run.poll() is None and time.time() < deadline, err.read_text()[-2000:]
            time.sleep(0.1)
        with pytest.raises(RegalError, match=f"^{run_dir} is in use by process {run.pid}$"):
            RunLock(run_dir).acquire()
    finally:
        run.kill()
        run.wait()


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    code = (
        "import sys, time; from regal_torch.lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(300)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RegalError, match=f"is in use by process {holder.pid}$"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead holder's lock
    lock.release()
    assert (tmp_path / ".lock").read_bytes() == b""  # never written


def test_a_refused_resume_leaves_the_folder_as_it_was(tiny, run_copy, capsys):
    before = _snapshot(run_copy)
    out = _run([*tiny, "loop.rounds=1", "strategy=uncertainty", f"hydra.run.dir={run_copy}"])
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "state was written by another config" in out.stderr
    assert _snapshot(run_copy) == before  # .hydra/ too: still the run's own config
    assert status_main([str(run_copy)]) == 0
    assert "strategy=random" in capsys.readouterr().out


def test_an_accepted_resume_records_its_config(tiny, run_copy):
    out = _run([*tiny, "loop.rounds=2", "strategy=random", f"hydra.run.dir={run_copy}"])
    assert out.returncode == 0, out.stderr
    assert "rounds: 2" in (run_copy / ".hydra" / "config.yaml").read_text()
    assert "- loop.rounds=2" in (run_copy / ".hydra" / "overrides.yaml").read_text()
    assert "strategy: random" in (run_copy / ".hydra" / "hydra.yaml").read_text()
    assert not list(run_copy.glob(".*.tmp"))  # accepted: the stale temporary is gone


def test_error_inside_instantiation_is_our_one_line_and_no_folder(tmp_path):
    run_dir = tmp_path / "new" / "run"
    missing = tmp_path / "missing.csv"
    out = _run(["data=molecules", f"data.path={missing}", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 2
    assert out.stderr == f"error: {missing}: no such file (data.path)\n"
    assert list(tmp_path.iterdir()) == []  # neither run nor its parent new was created


def test_a_run_refused_in_an_existing_empty_folder_keeps_it(tiny, tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    out = _run([*tiny, "loop.rounds=100", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 2 and "pool holds only" in out.stderr
    assert list(tmp_path.iterdir()) == [run_dir] and list(run_dir.iterdir()) == []
