"""Learn mode with computed labels: oracle=function and oracle=command on a fake calculation that
fails for some molecules (tests/fake_oracle.py, tests/fake_command.py), failures kept out of the
pool, every label saved as it arrives, and a run killed mid-round that recomputes nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import compose_config
from fake_oracle import value
from test_learn import _overrides as learn_overrides

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.loop.state import read_state
from regal_torch.oracles.command import CommandOracle
from regal_torch.oracles.function import FunctionOracle

TESTS = Path(__file__).resolve().parent
COMMAND = f"{sys.executable} {TESTS / 'fake_command.py'}"


@pytest.fixture
def smiles_file(qm9_small, tmp_path):
    """60 QM9 SMILES with ids m0..m59 and no labels: a closed loop labels them all."""
    rows = [f"m{i},{qm9_small[i].smiles}" for i in range(60)]
    path = tmp_path / "mine.csv"
    path.write_text("name,smiles\n" + "\n".join(rows) + "\n")
    return path


def _overrides(path, *extra):
    """test_learn's learn-mode run on a file without labels, its start set picked at random."""
    return learn_overrides(
        path,
        "data.target_column=null",
        "data.target=target",
        "loop.initial_size=10",
        "progress=false",
        *extra,
    )


def _function(*extra):
    return ["oracle=function", "oracle.function=fake_oracle:label", "oracle.workers=2", *extra]


def _check_closed_loop(loop, run_dir, smiles, rounds):
    """Every label is the fake calculation's, failures are recorded and never picked again."""
    assert len(loop.history) == rounds + 1 and loop.pending is None  # no stop between rounds
    assert [row["n_labeled"] for row in loop.history] == [
        len(loop.labels.label_rounds[loop.labels.label_rounds <= r]) for r in range(rounds + 1)
    ]
    asked = [pd.read_csv(run_dir / "queries" / f"round_{r:03d}.csv") for r in range(rounds + 1)]
    ids = [i for frame in asked for i in frame["id"]]
    assert len(ids) == len(set(ids)) == 4 + 4 + 10 + 5 * rounds  # no molecule asked twice
    failing = sorted(i for i in ids if i[-1] in "37")
    assert failing  # the fake calculation failed for some
    failed = pd.read_csv(run_dir / "failed.csv")
    assert sorted(failed["id"]) == failing
    position = {f"m{i}": i for i in range(60)}
    selected = pd.read_csv(run_dir / "selected.csv")
    got = {f"m{p}": label for p, label in zip(selected["position"], selected["label"], strict=True)}
    assert set(got) == set(ids) - set(failing) - {f"m{p}" for p in loop.dm.val.tolist()} - {
        f"m{p}" for p in loop.dm.test.tolist()
    }
    for ident, label in got.items():
        assert label == pytest.approx(value(ident, smiles[position[ident]]))
    truth = loop.dm.truth[torch.cat([loop.dm.val, loop.dm.test])]
    want = [value(f"m{p}", smiles[p]) for p in torch.cat([loop.dm.val, loop.dm.test]).tolist()]
    assert truth.tolist() == pytest.approx(want)
    return failed


def test_a_round_where_every_calculation_fails_stops_and_is_retried(smiles_file, tmp_path):
    run_dir = tmp_path / "run"
    overrides = _overrides(smiles_file, *_function("oracle.function=fake_oracle:broken"))
    with pytest.raises(RegalError) as info:
        ActiveLoop(compose_config(overrides), run_dir).run()
    query = run_dir / "queries" / "round_000.csv"
    first = int(read_state(run_dir / "state.pt")["pending"][0])
    assert str(info.value) == (
        f"{query}: all 18 calculations failed (first: m{first}: "
        "RuntimeError: no basis set found); nothing labeled: fix the oracle and re-run to "
        "compute them again"
    )
    assert (pd.read_csv(query, keep_default_na=False)["error"] == "").all()  # to be retried
    # oracle.* options are result-neutral: another function resumes the same run
    loop = ActiveLoop(compose_config([*overrides, *_function(), "loop.rounds=0"]), run_dir)
    loop.run()
    dm = loop.dm  # the oracle fixed: the start set is computed
    assert len(dm.labeled) + len(dm.val) + len(dm.test) + len(loop.labels.failed) == 18


def test_timeouts_and_crashes_fail_only_their_molecule(smiles_file, tmp_path):
    ids = [f"m{i}" for i in range(10, 16)]
    oracle = FunctionOracle(
        tmp_path,
        ids,
        ["C"] * 6,
        function="fake_oracle:hang",
        workers=2,
        timeout=1.5,
        progress=False,
    )
    positions = torch.arange(6)
    oracle.ask(1, positions, torch.zeros(6), torch.ones(6))
    answers = oracle.answers(1, positions)
    assert answers.positions.tolist() == [0, 2, 4]  # m10, m12, m14
    reasons = dict(zip(answers.failed.tolist(), answers.reasons, strict=True))
    assert reasons == {
        1: "timed out after 1.5 s",
        3: "ValueError: fake SCF did not converge",
        5: "its process died (exit code 3)",
    }


def test_progress_bar_and_timing_line(tmp_path, capsys):
    ids, positions = ["m10", "m13", "m14"], torch.arange(3)
    oracle = FunctionOracle(tmp_path, ids, ["C", "CC", "CCC"], function="fake_oracle:label")
    oracle.show = True  # progress=auto: stderr is no terminal under pytest
    oracle.ask(1, positions, torch.zeros(3), torch.ones(3))
    oracle.answers(1, positions)
    out, err = capsys.readouterr()
    assert "labels round_001.csv" in err and "3/3" in err and "failed 1" in err
    assert "round_001.csv: 2 labels computed, 1 failed; " in out
    assert "s per molecule with 1 at a time" in out


def test_function_oracle_options_are_checked(tmp_path):
    with pytest.raises(RegalError, match=r"oracle.function='fake_oracle' must name a callable"):
        FunctionOracle(tmp_path, [], [], function="fake_oracle")
    with pytest.raises(RegalError, match=r"cannot import no_such_module: ModuleNotFoundError"):
        FunctionOracle(tmp_path, [], [], function="no_such_module:f")
    with pytest.raises(RegalError, match=r"fake_oracle has no callable 'nothing'"):
        FunctionOracle(tmp_path, [], [], function="fake_oracle:nothing")
    with pytest.raises(RegalError, match=r"oracle.workers=0 must be an integer >= 1"):
        FunctionOracle(tmp_path, [], [], function="fake_oracle:label", workers=0)
    with pytest.raises(RegalError, match=r"oracle.timeout=-1 must be null or a number"):
        FunctionOracle(tmp_path, [], [], function="fake_oracle:label", timeout=-1)


def test_computed_oracles_need_learn_mode_and_no_labels_file(smiles_file, tmp_path):
    with pytest.raises(RegalError, match="oracle FunctionOracle computes labels in mode=learn"):
        ActiveLoop(
            compose_config(_overrides(smiles_file, *_function(), "mode=benchmark")), tmp_path
        )
    with pytest.raises(RegalError, match="labels=a.csv gives labels for oracle=file's"):
        ActiveLoop(  # refused before the run folder is opened
            compose_config(_overrides(smiles_file, *_function(), "labels=a.csv")), tmp_path
        )


def test_command_oracle_runs_a_closed_loop(smiles_file, tmp_path):
    run_dir = tmp_path / "run"
    overrides = _overrides(smiles_file, "oracle=command", f"oracle.command={COMMAND}")
    loop = ActiveLoop(compose_config([*overrides, "loop.rounds=0"]), run_dir)
    loop.run()
    failed = _check_closed_loop(loop, run_dir, loop.dataset.smiles, rounds=0)
    reasons = dict(zip(failed["id"], failed["reason"], strict=True))
    log = run_dir / "oracle" / "round_000.log"
    assert {reasons[i] for i in reasons if i.endswith("3")} == {
        f"not in the output of oracle.command (see {log})"
    }
    assert {reasons[i] for i in reasons if i.endswith("7")} == {
        "label 'nan' in the output of oracle.command"
    }
    assert log.exists()


def test_command_exiting_early_fails_the_rest_and_a_rerun_keeps_what_it_wrote(
    tmp_path, monkeypatch
):
    ids, smiles = [f"m{i}" for i in range(10, 16)], ["CC", "CCO", "CCC", "CN", "CCN", "CO"]
    positions = torch.arange(6)
    oracle = CommandOracle(
        tmp_path, ids, smiles, command=f"{COMMAND} --exit-after 3", progress=False
    )
    oracle.ask(1, positions, torch.zeros(6), torch.ones(6))
    answers = oracle.answers(1, positions)
    assert answers.positions.tolist() == [0, 1, 2] and answers.values.tolist() == pytest.approx(
        [0.2, 0.3, 0.3]
    )
    log = tmp_path / "oracle" / "round_001.log"
    assert answers.reasons == [f"oracle.command exited with status 1 (see {log})"] * 3

    # A killed run left its program's output behind: a re-run takes it and asks only the rest.
    record = tmp_path / "queries" / "round_002.csv"
    oracle.ask(2, positions, torch.zeros(6), torch.ones(6))
    (tmp_path / "oracle" / "round_002_labels.csv").write_text("id,label\nm10,5.0\nm11,6.")
    monkeypatch.setenv("FAKE_ORACLE_LOG", str(tmp_path / "log.txt"))
    oracle.command = COMMAND
    answers = oracle.answers(2, positions)
    assert (tmp_path / "log.txt").read_text().split() == ids[1:]  # m11's line was unfinished
    assert dict(zip(answers.positions.tolist(), answers.values.tolist(), strict=True))[0] == 5.0
    assert pd.read_csv(record)["label"].notna().sum() == len(answers.positions) == 5


@pytest.mark.slow  # a run of its own (about 10 s)
def test_sigterm_while_computing_stops_the_run_and_keeps_the_labels(smiles_file, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "FAKE_ORACLE_SLEEP": "0.2"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    overrides = _overrides(smiles_file, *_function(), f"hydra.run.dir={run_dir}")
    with open(tmp_path / "err.txt", "w") as err:
        run = subprocess.Popen(
            [sys.executable, "-m", "regal_torch.run", *overrides],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    query = run_dir / "queries" / "round_000.csv"
    deadline = time.time() + 120
    while time.time() < deadline and _results(query) < 4:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 2
    assert (tmp_path / "err.txt").read_text().splitlines()[-1] == (
        f"error: stopped by SIGTERM while computing the labels of {query}; those computed are "
        "kept: run the same command again to compute the rest"
    )
    assert 4 <= _results(query) < 18 and (run_dir / "state.pt").exists()


def _results(query):
    if not query.exists():
        return 0
    frame = pd.read_csv(query, keep_default_na=False)  # no error column yet: just asked
    return int(((frame["label"] != "") | (frame.get("error", "") != "")).sum())


def test_function_oracle_closed_loop_killed_mid_round_resumes_without_recomputing(
    smiles_file, tmp_path, monkeypatch
):
    """A closed loop with oracle=function, SIGKILLed while round 1's picks are computed (on
    the 21st call: the start set has 18); the re-run computes only the picks without a result.
    Failed molecules are recorded with their reason and never offered again."""
    run_dir, log = tmp_path / "run", tmp_path / "calls.txt"
    overrides = _overrides(smiles_file, *_function("oracle.workers=1"), "loop.rounds=1")
    env = {**os.environ, "FAKE_ORACLE_LOG": str(log), "FAKE_ORACLE_KILL_AT": "21"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "regal_torch.run", *overrides, f"hydra.run.dir={run_dir}"]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode == -9, killed.stderr
    query = pd.read_csv(run_dir / "queries" / "round_001.csv", keep_default_na=False)
    done = set(query["id"][(query["label"] != "") | (query["error"] != "")])
    assert len(done) == 2  # two results were saved before the kill, the third was lost
    before = log.read_text().split()

    monkeypatch.setenv("FAKE_ORACLE_LOG", str(log))
    loop = ActiveLoop(compose_config(overrides), run_dir)
    loop.run()
    again = log.read_text().split()[len(before) :]
    assert sorted(again) == sorted(set(query["id"]) - done)  # only the rest of round 1

    failed = _check_closed_loop(loop, run_dir, loop.dataset.smiles, rounds=1)
    reasons = dict(zip(failed["id"], failed["reason"], strict=True))
    assert {reasons[i] for i in reasons if i.endswith("3")} == {
        "ValueError: fake SCF did not converge"
    }
    assert {reasons[i] for i in reasons if i.endswith("7")} == {"returned nan"}
    resumed = ActiveLoop(compose_config([*overrides, "loop.rounds=2"]), run_dir).open()
    gone = torch.tensor([int(i[1:]) for i in failed["id"]])
    assert not torch.isin(gone, resumed.dm.pool).any()  # a resume keeps them out of the pool
    assert resumed.labels.failed_reasons == failed["reason"].tolist()


def test_a_closed_loop_under_several_processes_is_refused(smiles_file, tmp_path):
    """The oracle computes between rounds; the other DDP processes would wait past their
    collective timeout, so the loop refuses it when built."""
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    cfg = compose_config([*_overrides(smiles_file, *_function()), *ddp])
    with pytest.raises(RegalError, match="computes labels between rounds.*trainer.devices=1"):
        ActiveLoop(cfg, tmp_path / "run")
