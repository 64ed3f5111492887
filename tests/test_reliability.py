"""Inputs a new user tries that once ended in a traceback, were accepted silently or misled:
each is now one ``error:`` line naming the file, line or option (or a recorded failure)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_learn import _overrides as learn_overrides
from test_learn import csv  # noqa: F401 (a fixture)
from test_oracles import TESTS, _function, _overrides, smiles_file  # noqa: F401 (a fixture)

from regal_torch.data.molecules import MoleculeDataset
from regal_torch.data.table import TableDataset
from regal_torch.errors import RegalError
from regal_torch.loop.queries import read_answers
from regal_torch.loop.state import atomic_write_bytes
from regal_torch.oracles.worker import call


def _run(args, env=None):
    cmd = [sys.executable, "-m", "regal_torch.run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_oracle_workers_end_with_a_killed_run(smiles_file, tmp_path):  # noqa: F811
    """A worker calls SIGKILL on the run (the 6th call); the other worker, mid-call, ends with
    it instead of finishing a calculation nobody will read."""
    run_dir, log = tmp_path / "run", tmp_path / "calls.txt"
    env = {**os.environ, "FAKE_ORACLE_LOG": str(log), "FAKE_ORACLE_KILL_AT": "6",
           "FAKE_ORACLE_SLEEP": "1"}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    killed = _run([*_overrides(smiles_file, *_function()), f"hydra.run.dir={run_dir}"], env)
    assert killed.returncode == -9, killed.stderr
    calls = len(log.read_text().split())
    time.sleep(3)  # a surviving worker would log its next call within a second
    assert len(log.read_text().split()) == calls == 6
    assert "BrokenPipeError" not in killed.stderr


def test_a_function_oracle_s_string_or_bool_is_a_failed_calculation():
    assert call(lambda i, s: "1.5", "m1", "C") == (None, "returned '1.5', not a number")
    assert call(lambda i, s: True, "m1", "C") == (None, "returned True, not a number")
    assert call(lambda i, s: np.float32(1.5), "m1", "C") == (1.5, "")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.devices=0", "error: trainer.devices=0 must be an integer >= 1, auto, or a list"),
        ("progress=maybe", "error: progress='maybe' must be one of true, false, auto\n"),
        ("labels=given.csv", "error: labels=given.csv gives labels for learn mode's query files"),
        ("hydra.run.dir=/proc/regal_run", "error: hydra.run.dir=/proc/regal_run: cannot write"),
    ],
)
def test_bad_options_are_one_line_before_anything_is_written(tiny, tmp_path, override, message):
    run_dir = tmp_path / "run"
    out = _run([*tiny, f"hydra.run.dir={run_dir}", override])
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
    assert len(out.stderr.splitlines()) == 1 and not run_dir.exists()


def test_a_computed_oracle_cannot_take_over_a_run_of_query_files(csv, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    first = _run([*learn_overrides(csv, "loop.initial_size=10"), f"hydra.run.dir={run_dir}"])
    assert first.returncode == 0, first.stderr
    state = (run_dir / "state.pt").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    take_over = learn_overrides(csv, "loop.initial_size=10", *_function())
    again = _run([*take_over, f"hydra.run.dir={run_dir}"], env)
    assert again.returncode == 2
    assert again.stderr.startswith("error: this run's labels came from query files")
    assert (run_dir / "state.pt").read_bytes() == state


def test_a_huge_label_names_the_query_file_and_line(tmp_path):
    query = tmp_path / "round_001.csv"
    query.write_text("id,smiles,label\na,C,1.0\nb,CC,1e300\n")
    with pytest.raises(RegalError, match=r"round_001.csv: line 3: label '1e300' is beyond the"):
        read_answers(query, ["a", "b"])


def test_a_byte_that_is_not_utf8_is_named_at_its_line(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_bytes(b"smiles,target\n" + b"CC,1.0\n" * 300 + b"C\xff,2.0\n")
    with pytest.raises(RegalError, match=r"mine.csv: line 302: not a readable text file"):
        MoleculeDataset(str(path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(RegalError, match=r"mine.csv: line 302: not a readable text file"):
        TableDataset(str(path))


def test_a_folder_as_data_path_an_empty_id_and_a_smiles_with_a_space(tmp_path, caplog):
    with pytest.raises(RegalError, match=r": a folder, not a file \(data.path\)"):
        MoleculeDataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(RegalError, match=r": a folder, not a file \(data.path\)"):
        TableDataset(str(tmp_path))
    ids = tmp_path / "ids.csv"
    ids.write_text("smiles,target,id\nCCO,1.0,a\nCCC,3.0,\n")
    with pytest.raises(RegalError, match=r"ids.csv: empty id \(data.id_column\) at line 3"):
        MoleculeDataset(str(ids), id_column="id", cache_dir=str(tmp_path / "cache"))
    table = tmp_path / "table.csv"
    table.write_text("x,target,id\n1.0,1.0,a\n2.0,3.0, \n")
    with pytest.raises(RegalError, match=r"table.csv: empty id \(data.id_column\) at line 3"):
        TableDataset(str(table), id_column="id")
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("smiles,target\nCCO,1.0\nC C,2.0\nCCC,3.0\n")
    dataset = MoleculeDataset(str(spaced), cache_dir=str(tmp_path / "cache"))
    assert list(dataset.smiles) == ["CCO", "CCC"]  # "C C" is not read as methane
    assert "skipped 1 unreadable molecules at line 3" in caplog.text


def test_an_unwritable_file_is_one_line_naming_it(tmp_path, monkeypatch):
    target = tmp_path / "selected.csv"
    target.write_text("old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RegalError, match=r"selected.csv: cannot write it \(PermissionError: "):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]
