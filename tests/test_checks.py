"""Options checked before any training (one error line naming option, value and what is
allowed), and run folders that cannot be written."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.errors import RegalError
from regal_torch.loop.checks import check_budget, check_config
from regal_torch.run import CONFIG_DIR
from regal_torch.run_folder import folder_problem


def _run(args, cwd=None):
    cmd = [sys.executable, "-m", "regal_torch.run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data=molecules"], "data.path has no value and is required: add data.path=..."),
        (["loop.batch_size=abc"], "loop.batch_size='abc' must be an integer >= 1"),
        (["loop.batch_size=null"], "loop.batch_size=null must be an integer >= 1"),
        (["loop.batch_size=2.5"], "loop.batch_size=2.5 must be an integer >= 1"),
        (["loop.initial_size=1"], "loop.initial_size=1 must be an integer >= 2"),
        (["loop.rounds=-1"], "loop.rounds=-1 must be an integer >= 0"),
        (["loop.recalibrate=maybe"], "loop.recalibrate='maybe' must be true or false"),
        (["seed=abc"], "seed='abc' must be an integer >= 0"),
        (["seed=true"], "seed=true must be an integer >= 0"),
        (["data.subset=0"], "data.subset=0 must be null or an integer from 1 to 130831"),
        (["data.datamodule.test_size=0"], "test_size=0 must be a fraction between 0 and 1"),
        (["data.datamodule.test_size=1.0"], "test_size=1.0 must be a fraction between 0 and"),
        (["data.datamodule.val_size=2.5"], "val_size=2.5 must be a fraction between 0 and 1"),
        (["data.datamodule.batch_size=0"], "datamodule.batch_size=0 must be an integer >= 1"),
        (["data.datamodule.predict_batch_size=0"], "predict_batch_size=0 must be an integer"),
        (["data.datamodule.num_workers=-1"], "num_workers=-1 must be an integer >= 0"),
        (["data.datamodule.split_seed=x"], "split_seed='x' must be an integer >= 0"),
        (["data.num_workers=x"], "data.num_workers='x' must be null or an integer >= 0"),
        (["engine.workers=-1"], "engine.workers=-1 must be null or an integer >= 0"),
        (["engine=ray", "engine.num_cpus=0"], "engine.num_cpus=0 must be null or an integer >= 1"),
        (["model.mc_samples=0"], "model.mc_samples=0 must be an integer >= 2"),
        (["model.dropout=1.5"], "model.dropout=1.5 must be a number from 0 up to, not including"),
        (["model.hidden_dim=0"], "model.hidden_dim=0 must be an integer >= 1"),
        (["model.num_layers=abc"], "model.num_layers='abc' must be an integer >= 1"),
        (["model.lr=0"], "model.lr=0 must be a number > 0"),
        (["model.weight_decay=-1"], "model.weight_decay=-1 must be a number >= 0"),
        (["model.pooling=avg"], "model.pooling='avg' must be one of mean, sum, max"),
        (["model=ensemble", "model.members=1"], "model.members=1 must be an integer >= 2"),
        (["model=dkl", "model.kernel=cosine"], "model.kernel='cosine' must be one of rbf"),
        (["model=dkl", "model.inducing_points=0"], "inducing_points=0 must be an integer >= 1"),
        (["model=dkl", "model.gp_lr=-1"], "model.gp_lr=-1 must be a number > 0"),
        (["model=gp", "model.fit_iters=0"], "model.fit_iters=0 must be an integer >= 1"),
        (["model=mean_variance", "model.beta=2"], "model.beta=2 must be a number from 0 to 1"),
        (["model=laplace", "model.evidence_steps=0"], "evidence_steps=0 must be an integer >= 1"),
        (
            ["model=evidential", "model.regularizer=-1"],
            "model.regularizer=-1 must be a number >= 0",
        ),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1 (0 would"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 must be an integer >= 1"),
    ],
)
def test_wrong_values_are_one_line_naming_option_value_and_range(overrides, message):
    with pytest.raises(RegalError) as info:  # the network's options (a later model= wins)
        check_config(compose_config(["model=mc_dropout", *overrides]))
    assert message in str(info.value) and "\n" not in str(info.value)


def _options(group):
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("model", "strategy", "trainer", "experiment") for o in _options(g)]
    + ["data=molecules data.path=mols.csv", "loop.local_neighbours=5", "data.subset=null"],
)
def test_every_shipped_config_passes(override):
    check_config(compose_config(override.split()))


def test_a_test_set_of_fewer_than_two_molecules_is_refused(tiny, qm9_small):
    cfg = compose_config([*tiny, "data.datamodule.test_size=0.001"])
    dm = ActiveDataModule(qm9_small, "gap", test_size=0.001, val_size=20)
    with pytest.raises(RegalError, match="test_size leaves 0 test molecules; the loop needs"):
        check_budget(cfg, dm, learn=False)
    check_budget(
        compose_config(tiny),
        ActiveDataModule(qm9_small, "gap", val_size=20, test_size=50),
        learn=False,
    )


# The three tests below run the command end to end; they pass once ActiveLoop.__init__ calls
# check_config(cfg) first (regal_torch/loop/active_loop.py, wired by the loop's owner).
@pytest.mark.parametrize(
    "override,message",
    [
        ("loop.batch_size=abc", "error: loop.batch_size='abc' must be an integer >= 1\n"),
        ("trainer.max_epochs=0", "error: trainer.max_epochs=0 must be an integer >= 1 (0 "),
    ],
)
def test_command_line_wrong_value_is_one_line_exit_2(tiny, tmp_path, override, message):
    run_dir = tmp_path / "run"
    out = _run([*tiny, override, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
    assert len(out.stderr.splitlines()) == 1 and not run_dir.exists()


@pytest.mark.parametrize(
    ("data", "kind"),
    [("molecules", "a .csv, .smi or .sdf file, optionally .gz"), ("table", "a .csv file")],
)
def test_command_line_data_without_path_is_one_line_exit_2(tmp_path, data, kind):
    out = _run([f"data={data}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        f"error: data.path has no value and is required: add data.path=... ({kind})\n"
    )


def test_a_strategy_the_model_cannot_serve_is_refused_before_the_folder_exists(tiny, tmp_path):
    run_dir = tmp_path / "run"
    tiny = [o for o in tiny if not o.startswith("model.")]  # the network's sizes
    out = _run([*tiny, "model=gp", "strategy=lcmd_grad", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 2 and not run_dir.exists()
    assert out.stderr == (
        "error: strategy LCMDStrategy needs Prediction.gradients, which model FingerprintGP "
        "does not provide (it provides mean, var, embedding, covariance)\n"
    )
    cold = _run([*tiny, "model=gp", "loop/initial_strategy=kmeanspp", f"hydra.run.dir={run_dir}"])
    assert cold.returncode == 2 and not run_dir.exists()
    assert "loop.initial_features=model needs a model that predicts untrained" in cold.stderr
    skipped = _run([*tiny, "model=gp", "strategy=maxdist_grad", "on_unserved=skip",
                    f"hydra.run.dir={run_dir}"])  # fmt: skip
    assert skipped.returncode == 0 and not run_dir.exists()
    assert skipped.stdout.startswith("skipped: strategy MaxDistStrategy needs Prediction.gradie")


def test_run_folder_that_cannot_be_created_is_one_line_exit_2(tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for where in (blocker / "run", blocker):
        out = _run([*tiny, f"hydra.run.dir={where}"])
        assert out.returncode == 2
        assert out.stderr == (
            f"error: hydra.run.dir={where}: cannot write the run there: "
            f"{blocker} is a file, not a folder\n"
        )
    sweep = _run(["--multirun", *tiny, "seed=0,1", f"hydra.sweep.dir={blocker / 'sweep'}"])
    assert sweep.returncode == 2 and "error: hydra.sweep.dir=" in sweep.stderr
    assert blocker.read_text() == "not a folder"


def test_folder_problem_names_the_folder_it_cannot_write(tmp_path, monkeypatch):
    assert folder_problem(tmp_path / "new" / "run") is None
    monkeypatch.setattr("os.access", lambda path, mode: False)  # as for a user without rights
    assert folder_problem(tmp_path / "new" / "run") == f"no permission to write in {tmp_path}"
