"""The engines: Ray tasks compute what local worker processes compute (features, failures,
crashes), on a Ray started by the command and on a cluster of separately started processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_featurizer import CountingFeaturizer

from regal_torch.engine.local import LocalEngine
from regal_torch.engine.ray_engine import RayEngine
from regal_torch.errors import RegalError
from regal_torch.features.molecule_features import molecule_features

SMILES = ["CCO", "CC", "CCC", "CKILLC", "CXC", "c1ccccc1", "CCN", "CCCl", "OCCO", "CC(=O)O"]


@pytest.fixture(scope="module")
def ray_here():
    """A Ray of two CPUs started by this process, shut down after the module's tests."""
    ray = pytest.importorskip("ray")
    yield RayEngine(num_cpus=2)
    ray.shutdown()


def _features(folder: Path, engine):
    features = molecule_features(["fake"], {"fake": CountingFeaturizer()}, SMILES, folder, engine)
    features.ensure(np.arange(len(SMILES)))
    return features


def test_ray_tasks_compute_what_local_processes_compute(tmp_path, ray_here, monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("regal_torch.features.store.CHUNK", 3)  # four parts, one of them split
    local = _features(tmp_path / "local", LocalEngine(2))
    ray = _features(tmp_path / "ray", ray_here)
    rows = np.arange(len(SMILES))
    np.testing.assert_array_equal(ray.rows(rows), local.rows(rows))  # NaN where either failed
    assert ray.computed == local.computed == len(SMILES)
    # the same molecules failed: the one without values and the one that kills its worker
    assert set(ray.failures["fake"]) == set(local.failures["fake"]) == {3, 4}
    assert "Ray worker died" in ray.failures["fake"][3]
    assert ray.failures["fake"][4] == local.failures["fake"][4] == "ValueError: no X here"
    assert "as Ray tasks on 2 CPUs of 1 node" in ray_here.describe(4)
    assert signal.getsignal(signal.SIGTERM) is before  # the run's SIGTERM handler is kept


@pytest.mark.parametrize(
    ("engine", "options", "message"),
    [
        (LocalEngine, {"workers": -1}, "engine.workers must be an integer >= 0 or null"),
        (LocalEngine, {"workers": "x"}, "engine.workers must be an integer >= 0 or null"),
        (RayEngine, {"num_cpus": 0}, "engine.num_cpus must be an integer >= 1 or null"),
        (RayEngine, {"address": " "}, "engine.address must be auto, HOST:PORT or null"),
    ],
)
def test_engine_options_are_checked(engine, options, message):
    with pytest.raises(RegalError, match=message):
        engine(**options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_cluster_of_a_head_and_a_worker_gives_the_local_run(tmp_path):
    """``ray start --head`` and ``ray start --address`` as separate processes, one CPU each:
    the run on it computes the same features, picks the same molecules and writes the same
    predictions as the run with ``engine=local``."""
    pytest.importorskip("ray")
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    short = tempfile.mkdtemp(prefix="ray")  # its sockets' paths must be short
    env = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": short}
    port = _free_port()
    head = [*ray, "start", "--head", f"--port={port}", "--num-cpus=1",
            "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    worker = [*ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
              "--disable-usage-stats"]  # fmt: skip
    try:
        for command in (head, worker):
            started = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
            assert started.returncode == 0, started.stderr[-2000:]
        runs = {}
        on_cluster = ["engine=ray", f"engine.address=127.0.0.1:{port}"]
        for name, engine in [("local", ["engine=local"]), ("ray", on_cluster)]:
            run_dir = tmp_path / name / "run"
            cmd = [
                sys.executable, "-m", "regal_torch.run", "data.subset=300",
                f"data.dataset.root={tmp_path / name / 'qm9'}", "data.features=[minimol]",
                "model=gp", "loop.initial_size=30", "loop.batch_size=10", "loop.rounds=1",
                "data.datamodule.test_size=50", "data.datamodule.val_size=40",
                "loop.candidates=null", f"hydra.run.dir={run_dir}", *engine,
            ]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
            runs[name] = run_dir
        assert "as Ray tasks on 2 CPUs of 2 nodes" in out.stderr
        for table in ("selected.csv", "predictions.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(runs["ray"] / table), pd.read_csv(runs["local"] / table)
            )
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(short, ignore_errors=True)
