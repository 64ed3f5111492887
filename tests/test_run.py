"""The loop end to end: the command-line contract, exact resume, refused states, configs."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import compose_config as _cfg
from hydra.utils import instantiate

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.run import CONFIG_DIR

TIMINGS = ["seconds_train", "seconds_test", "seconds_predict", "seconds_select"]


def _tables(run_dir):
    history = pd.read_csv(run_dir / "history.csv").drop(columns=TIMINGS)
    return history, pd.read_csv(run_dir / "selected.csv")


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    ActiveLoop(_cfg(tiny), run_dir).run()
    return run_dir


def test_contract_command(qm9_root, qm9_small, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "regal_torch.run",
        "data=qm9",
        "data.subset=300",
        "data.target=gap",
        "model=mc_dropout",
        "strategy=uncertainty",
        "loop.initial_size=20",
        "loop.batch_size=10",
        "loop.rounds=3",
        "trainer.max_epochs=2",
        "seed=0",
        f"hydra.run.dir={run_dir}",
        f"data.dataset.root={qm9_root}",
        "model.mc_samples=4",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sum(line.startswith("round ") for line in out.stdout.splitlines()) == 4
    history = pd.read_csv(run_dir / "history.csv")
    assert history["n_labeled"].tolist() == [20, 30, 40, 50]
    assert {"round", "test_mae", "test_rmse", "test_r2", *TIMINGS} <= set(history.columns)
    assert history["test_mae"].between(0, 5).all()
    selected = pd.read_csv(run_dir / "selected.csv")
    assert list(selected.columns) == ["round", "position", "mol_id", "label"]
    assert selected["round"].value_counts().sort_index().tolist() == [20, 10, 10, 10]
    assert selected["position"].is_unique
    truth = qm9_small.y[selected["position"].to_numpy(), 4]  # gap, as revealed
    assert selected["label"].to_numpy() == pytest.approx(truth.numpy())
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "state.pt").exists()


def test_bad_option_is_one_line_and_exit_2(qm9_root, qm9_small, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "regal_torch.run",
        "data.subset=300",
        "loop.batch_size=100000",
        f"hydra.run.dir={tmp_path}",
        f"data.dataset.root={qm9_root}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "loop.batch_size (100000)" in errors[0], out.stderr


def test_resume_after_interruption_is_exact(tiny, uninterrupted, tmp_path, monkeypatch):
    original = ActiveLoop._round

    def dies_in_round_2(self, r, acquire):
        if r == 2:
            raise KeyboardInterrupt
        return original(self, r, acquire)

    monkeypatch.setattr(ActiveLoop, "_round", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        ActiveLoop(_cfg(tiny), tmp_path).run()
    assert len(pd.read_csv(tmp_path / "history.csv")) == 2
    monkeypatch.undo()
    resumed = ActiveLoop(_cfg(tiny), tmp_path).open()
    assert resumed.next_round == 2
    resumed.run()
    for got, want in zip(_tables(tmp_path), _tables(uninterrupted), strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_more_rounds_extend_a_finished_run_exactly(tiny, uninterrupted, tmp_path):
    ActiveLoop(_cfg([*tiny, "loop.rounds=1"]), tmp_path).run()
    ActiveLoop(_cfg(tiny), tmp_path).run()
    for got, want in zip(_tables(tmp_path), _tables(uninterrupted), strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_finished_run_is_not_redone(tiny, uninterrupted, capsys):
    before = (uninterrupted / "history.csv").read_text()
    ActiveLoop(_cfg(tiny), uninterrupted).run()
    assert "already done" in capsys.readouterr().out
    assert (uninterrupted / "history.csv").read_text() == before


def test_state_of_another_config_is_refused(tiny, uninterrupted):
    with pytest.raises(RegalError, match="strategy._target_"):
        ActiveLoop(_cfg([*tiny, "strategy=random"]), uninterrupted).open()


def test_budget_larger_than_the_pool_is_refused(tiny, tmp_path):
    with pytest.raises(RegalError, match="pool holds only"):
        ActiveLoop(_cfg([*tiny, "loop.rounds=100"]), tmp_path)


def _options(group):
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,option",
    [
        (g, o)
        for g in ("data", "model", "strategy", "trainer", "experiment", "loop/initial_strategy")
        for o in _options(g)
    ],
)
def test_every_config_option_composes_and_instantiates(group, option, tiny, qm9_small, tmp_path):
    overrides = [*tiny, f"{group}={option}"]
    if (group, option) == ("data", "molecules"):
        csv = tmp_path / "mols.csv"
        rows = [f"{qm9_small[i].smiles},{qm9_small.y[i, 4].item()}" for i in range(30)]
        csv.write_text("smiles,target\n" + "\n".join(rows) + "\n")
        overrides = [o for o in tiny if not o.startswith("data.")]
        overrides += ["data=molecules", f"data.path={csv}"]
    if (group, option) == ("data", "table"):  # a real table (source: tests/data/README.md)
        table = Path(__file__).parent / "data" / "diabetes_150.csv"
        overrides = [
            o for o in tiny if not o.startswith(("data.subset", "data.dataset.", "data.features"))
        ]
        overrides += ["data=table", f"data.path={table}", "data.target_column=target"]
    if group == "model" or option == "qm9_gap_features":  # tiny names MC-dropout's keys
        overrides = [o for o in overrides if not o.startswith("model.")]
    cfg = _cfg(overrides)
    if group == "data":
        dataset = instantiate(cfg.data.dataset)
        assert len(dataset) > 0
        assert instantiate(cfg.data.datamodule, dataset=dataset).pool.numel() > 0
    elif group == "model":
        model = instantiate(cfg.model)(
            node_dim=qm9_small.num_node_features, edge_dim=qm9_small.num_edge_features
        )
        assert sum(p.numel() for p in model.parameters()) > 0
    elif group == "strategy":
        assert hasattr(instantiate(cfg.strategy), "select")
    elif group == "loop/initial_strategy":
        assert hasattr(instantiate(cfg.loop.initial_strategy), "select")
    elif group == "trainer":
        if cfg.trainer.accelerator == "gpu" and not _has_cuda():
            pytest.skip("no CUDA device here")
        assert instantiate(cfg.trainer)().max_epochs == cfg.trainer.max_epochs
    else:  # an experiment: a whole study's sizes
        assert cfg.loop.rounds >= 0 and (cfg.data.subset is None or cfg.data.subset > 0)


def _has_cuda():
    import torch

    return torch.cuda.is_available()


def test_package_import_has_no_side_effects(tmp_path):
    code = "import regal_torch, os; print(sorted(os.listdir('.')))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]"


@pytest.mark.gpu
def test_loop_runs_on_a_gpu(tiny, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    history = ActiveLoop(_cfg([*tiny, "trainer=gpu"]), tmp_path).run()
    assert [row["n_labeled"] for row in history] == [20, 30, 40]
    assert all(0 < row["test_mae"] < 5 for row in history)


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "loop.batchsize=3",
            "unknown config option 'loop.batchsize'; did you mean 'loop.batch_size'?",
        ),
        ("model=foo", "Could not find 'model/foo'; Available options in 'model': dkl; ensemble"),
    ],
)
def test_unknown_option_is_one_line_with_a_suggestion(override, message, tmp_path):
    cmd = [sys.executable, "-m", "regal_torch.run", override, f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "state.pt").exists()


def test_own_strategy_config_through_the_search_path(tiny, tmp_path):
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "mine.yaml").write_text(
        "_target_: regal_torch.strategies.random.RandomStrategy\n"
    )
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "regal_torch.run", *tiny, "loop.rounds=1", "strategy=mine",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "strategy: mine" in (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert len(pd.read_csv(run_dir / "history.csv")) == 2


def test_the_default_is_the_gp_on_molecule_features():
    """The README's first command: the measured best (BENCHMARKS.md, molecule features)."""
    cfg = _cfg([])
    assert cfg.model._target_ == "regal_torch.models.gp.FingerprintGP"
    assert list(cfg.data.features) == ["minimol", "xtb"] and cfg.model.fingerprint
    assert list(cfg.data.featurizers.xtb.use) == [
        "homo", "lumo", "gap", "homo_1", "lumo_1", "energy", "dipole", "quadrupole",
        "charge_min", "charge_max",
    ]  # fmt: skip
    assert list(_cfg(["data=molecules", "data.path=x.csv"]).data.features) == ["minimol", "xtb"]
    assert cfg.strategy._target_ == "regal_torch.strategies.lcmd.LCMDStrategy"
    assert cfg.loop.local_neighbours == 0.05  # the std with signal (BENCHMARKS.md, uncertainty)
