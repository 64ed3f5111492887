"""``regal_torch.predict`` on bad input: one ``error:`` line, exit status 2, before any work,
and nothing written; SIGTERM ends it the same way."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.predict import main


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A finished one-round run on a two-column table, and a file to predict."""
    folder = tmp_path_factory.mktemp("predict_inputs")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=60), rng.normal(size=60)
    pd.DataFrame({"a": a, "b": b, "target": a - b}).to_csv(folder / "table.csv", index=False)
    run_dir = folder / "run"
    overrides = [
        "model=mc_dropout", "data=table", f"data.path={folder / 'table.csv'}",
        "data.datamodule.test_size=10", "data.datamodule.val_size=10", "loop.initial_size=10",
        "loop.batch_size=5", "loop.rounds=0", "trainer.max_epochs=1", "model.hidden_dim=8",
        "model.mc_samples=2", "progress=false",
    ]  # fmt: skip
    ActiveLoop(compose_config(overrides), run_dir).run()
    new = folder / "new.csv"
    pd.DataFrame({"a": a[:7], "b": b[:7]}).to_csv(new, index=False)
    return run_dir, new


def _refused(capsys, argv: list[str], message: str, folder: Path) -> None:
    before = sorted(p.name for p in folder.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("batch_size=0", "batch_size='0' must be an integer >= 1"),
        ("engine=nope", "cannot compose the engine options ['engine=nope']"),
        ("batch_size=-1", "batch_size='-1' must be an integer >= 1"),
        ("batch_size=x", "batch_size='x' must be an integer >= 1"),
        ("chunk_rows=0", "chunk_rows='0' must be an integer >= 1"),
        ("chunk_rows=-1", "chunk_rows='-1' must be an integer >= 1"),
        ("chunk_rows=x", "chunk_rows='x' must be an integer >= 1"),
        ("accelerator=foo", "accelerator='foo' must be one of auto, cpu, gpu, cuda"),
        ("data.feature_column=a", "unknown option 'data.feature_column' for this run's data"),
        ("size=3", "unknown option 'size=3'"),
    ],
)
def test_an_option_out_of_range_is_one_error_line(table_run, capsys, option, message):
    run_dir, new = table_run
    _refused(capsys, [str(run_dir), f"data.path={new}", option], message, run_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU machine")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_error_line(table_run, capsys):
    run_dir, new = table_run
    argv = [str(run_dir), f"data.path={new}", "accelerator=gpu"]
    _refused(capsys, argv, "no CUDA device here; use accelerator=cpu", run_dir)


def test_an_out_that_cannot_or_must_not_be_written_is_refused_before_any_work(
    table_run, capsys, tmp_path
):
    run_dir, new = table_run
    argv = [str(run_dir), f"data.path={new}"]
    _refused(capsys, [*argv, f"out={tmp_path}"], "is a folder; name a file", tmp_path)
    (tmp_path / "file").write_text("x")
    _refused(capsys, [*argv, f"out={tmp_path / 'file' / 'p.csv'}"], "is a file, not a", tmp_path)
    own = run_dir / "predictions.csv"
    before = own.read_bytes()
    _refused(capsys, [*argv, f"out={own}"], "would replace the run's own predictions.csv", run_dir)
    assert own.read_bytes() == before
    # a missing folder is created; a temporary file a killed writer left there is removed
    out = tmp_path / "new" / "deeper" / "p.csv"
    out.parent.mkdir(parents=True)
    dead = _dead_pid()
    (out.parent / f".p.csv.{socket.gethostname()}-{dead}-abcdef.tmp").write_text("killed")
    assert main([*argv, f"out={out}"]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["p.csv"]
    assert len(pd.read_csv(out)) == 7


def _dead_pid() -> int:
    """The process id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_damaged_model_file_is_one_error_line(table_run, capsys, tmp_path):
    run_dir, new = table_run
    saved = torch.load(run_dir / "model.ckpt", weights_only=False)
    for damage, message in [
        (lambda c: c["state_dict"].pop(next(iter(c["state_dict"]))), "no weight"),
        (lambda c: c["regal_torch"].pop("calibration"), "no calibration entry"),
        (lambda c: c["regal_torch"]["data"].pop("feature_names"), "no data card entry"),
        (lambda c: c.pop("regal_torch"), "not a regal_torch model file"),
    ]:
        damaged_run = tmp_path / "damaged"
        damaged_run.mkdir(exist_ok=True)
        checkpoint = torch.load(run_dir / "model.ckpt", weights_only=False)
        damage(checkpoint)
        torch.save(checkpoint, damaged_run / "model.ckpt")
        _refused(capsys, [str(damaged_run), f"data.path={new}"], message, damaged_run)
    assert saved.keys() == torch.load(run_dir / "model.ckpt", weights_only=False).keys()


def test_a_molecule_file_read_with_a_bad_worker_count_is_refused(tmp_path):
    from regal_torch.data.molecules import MoleculeDataset

    (tmp_path / "m.csv").write_text("smiles\nCCO\n")
    with pytest.raises(RegalError, match="data.num_workers must be an integer >= 0 or null"):
        MoleculeDataset(str(tmp_path / "m.csv"), target_column=None, num_workers="x")


def _handles_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has installed a SIGTERM handler (Linux: /proc's SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_sigterm_stops_predict_with_nothing_written(table_run, tmp_path):
    run_dir, _ = table_run
    big = tmp_path / "big.csv"
    rng = np.random.default_rng(1)
    pd.DataFrame(rng.normal(size=(200_000, 2)), columns=["a", "b"]).to_csv(big, index=False)
    out = tmp_path / "out" / "p.csv"
    cmd = [sys.executable, "-m", "regal_torch.predict", str(run_dir), f"data.path={big}",
           "batch_size=1", f"out={out}"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _handles_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # into the reading or the predicting
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert err.strip().splitlines()[-1] == f"error: stopped by SIGTERM; {out} was not written"
    assert list(out.parent.iterdir()) == []
