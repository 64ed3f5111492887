"""Kill a real run with SIGKILL at chosen points, re-run it, and get the uninterrupted result.

Each killed run is a real ``python -m regal_torch.run`` process in which one function is
wrapped to send SIGKILL to its own process on its n-th call; no test hook lives in the
package. The re-run is the plain command.
"""

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from regal_torch.loop.state import read_state

TIMINGS = ["seconds_train", "seconds_test", "seconds_predict", "seconds_select"]

INJECT = textwrap.dedent(
    """
    import importlib, os, signal, sys
    module_name, owner_name, attr, nth = sys.argv[1:5]
    module = importlib.import_module(module_name)
    owner = getattr(module, owner_name) if owner_name != "-" else module
    original = getattr(owner, attr)
    calls = [0]

    def dying(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, attr, dying)
    sys.argv = ["regal_torch.run", *sys.argv[5:]]
    from regal_torch.run import main
    main()
    """
)

# (what is interrupted, module, class or "-", function, call on which the process dies)
KILL_POINTS = [
    ("training", "regal_torch.models.mc_dropout", "MCDropoutRegressor", "training_step", 5),
    pytest.param(
        ("prediction", "regal_torch.models.prediction", "Prediction", "cat", 4),
        marks=pytest.mark.slow,
    ),
    ("selection", "regal_torch.strategies.base", "Strategy", "select", 2),
    ("state writing", "os", "-", "replace", 9),
]


def _overrides(root, run_dir):
    return [
        "model=mc_dropout",
        "data.features=[]",
        "strategy=lcmd",
        "loop.local_neighbours=null",
        "data.subset=300",
        f"data.dataset.root={root}",
        "data.datamodule.test_size=50",
        "data.datamodule.val_size=20",
        "data.datamodule.batch_size=16",
        "loop.initial_size=20",
        "loop.batch_size=10",
        "loop.rounds=3",
        "trainer.max_epochs=2",
        "model.hidden_dim=16",
        "model.mc_samples=4",
        f"hydra.run.dir={run_dir}",
    ]


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _tables(run_dir):
    history = pd.read_csv(run_dir / "history.csv").drop(columns=TIMINGS)
    return history, pd.read_csv(run_dir / "selected.csv")


@pytest.fixture(scope="module")
def uninterrupted(qm9_root, qm9_small, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    out = _run([sys.executable, "-m", "regal_torch.run", *_overrides(qm9_root, run_dir)])
    assert out.returncode == 0, out.stderr
    return run_dir


@pytest.mark.parametrize(
    "point", KILL_POINTS, ids=["training", "prediction", "selection", "state writing"]
)
def test_killed_run_resumes_to_the_uninterrupted_result(point, qm9_root, uninterrupted, tmp_path):
    _, module, owner, attr, nth = point
    overrides = _overrides(qm9_root, tmp_path)
    killed = _run([sys.executable, "-c", INJECT, module, owner, attr, str(nth), *overrides])
    assert killed.returncode == -9, killed.stderr  # it really died by SIGKILL
    state = tmp_path / "state.pt"  # a resume keeps the rounds in the checkpoint
    rounds_before = len(read_state(state)["history"]) if state.exists() else 0
    assert rounds_before < 4  # it died before the end
    resumed = _run([sys.executable, "-m", "regal_torch.run", *overrides])
    assert resumed.returncode == 0, resumed.stderr
    # the resumed process ran only the rounds the killed one had not finished
    assert (
        sum(line.startswith("round ") for line in resumed.stdout.splitlines()) == 4 - rounds_before
    )
    for got, want in zip(_tables(tmp_path), _tables(uninterrupted), strict=True):
        pd.testing.assert_frame_equal(got, want)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind after the resume
