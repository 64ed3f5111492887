"""Sweeps: the basic and submitit_local launchers, the SLURM launcher preset, the DDP preset."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import compose_config
from hydra import compose, initialize_config_dir

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.run import CONFIG_DIR

# Keeps the cache path out of the job folder names (hydra.job.override_dirname).
NO_ROOT_IN_DIRNAME = "hydra.job.config.override_dirname.exclude_keys=[data.dataset.root]"


def sweep(tiny: list[str], sweep_dir, *extra: str) -> subprocess.CompletedProcess:
    """``python -m regal_torch.run --multirun`` over strategy random, uncertainty x seed 0, 1."""
    cmd = [
        sys.executable, "-m", "regal_torch.run", "--multirun",
        "strategy=random,uncertainty", "seed=0,1",
        *[o for o in tiny if not o.startswith("strategy=")], *extra,
        f"hydra.sweep.dir={sweep_dir}", NO_ROOT_IN_DIRNAME,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=sweep_dir.parent)


def assert_complete_sweep(sweep_dir) -> None:
    """Four job folders named by their overrides, each with a finished 3-round history."""
    jobs = sorted(p.parent for p in sweep_dir.glob("*/history.csv"))
    names = [
        (p.name.split("seed=")[1].split(",")[0], p.name.split("strategy=")[1][:6]) for p in jobs
    ]
    assert sorted(names) == [("0", "random"), ("0", "uncert"), ("1", "random"), ("1", "uncert")]
    for job in jobs:
        assert pd.read_csv(job / "history.csv")["n_labeled"].tolist() == [20, 30, 40]
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "state.pt").is_file()


@pytest.mark.slow
def test_submitit_local_sweep_runs_every_job(tiny, qm9_small, tmp_path):
    out = sweep(tiny, tmp_path / "sweep", "hydra/launcher=submitit_local")
    assert out.returncode == 0, out.stderr[-2000:]
    assert_complete_sweep(tmp_path / "sweep")
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 4


def test_slurm_preset_composes_with_overrides():
    cmd = [
        sys.executable, "-m", "regal_torch.run", "hydra/launcher=slurm",
        "hydra.launcher.partition=a100", "hydra.launcher.timeout_min=30",
        "--cfg", "hydra", "--package", "hydra.launcher",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = set(out.stdout.splitlines())
    assert (
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in lines
    )
    assert {"partition: a100", "timeout_min: 30", "gpus_per_task: 1"} <= lines
    assert {"mem_gb: 32", "cpus_per_task: 8"} <= lines


def test_slurm_ddp_preset_follows_the_trainer_devices_and_nodes():
    overrides = ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4"]
    overrides.append("trainer.num_nodes=2")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_task) == (4, 2, 1)
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 3  # from slurm.yaml


def test_ddp_preset_composes():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer=ddp", "trainer.devices=4"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4
    assert cfg.trainer.accelerator == "auto" and cfg.trainer.max_epochs == 100


DDP2 = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model=gp"], "FingerprintGP runs in one process .its posterior.*trainer.devices=1"),
        (["model=laplace"], "LaplaceRegressor runs in one process .its posterior.*devices=1"),
        (["trainer.strategy=ddp_spawn"], "do not send their predictions back.*strategy=ddp"),
    ],
)
def test_multi_process_runs_the_loop_cannot_keep_in_step_are_refused(
    tiny, tmp_path, extra, message
):
    """Refused when the loop is built, before the folder is touched (a 2-process DDP run of a
    network is tests/test_ddp_loop.py's)."""
    overrides = [o for o in tiny if not o.startswith("model.") or not extra[0].startswith("model=")]
    cfg = compose_config([*overrides, *DDP2, *extra])
    with pytest.raises(RegalError, match=message):
        ActiveLoop(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_sweep_rerun_with_more_rounds_extends_the_same_folders(tiny, qm9_small, tmp_path):
    """The shipped config's job folder names leave out the options that do not change results
    (the list resume uses), so more rounds extend the runs instead of starting new ones."""
    base = [o for o in tiny if not o.startswith(("loop.rounds", "strategy="))]
    sweep_dir = tmp_path / "sweep"

    def run(rounds: int) -> None:
        cmd = [
            sys.executable, "-m", "regal_torch.run", "--multirun", "strategy=random", "seed=0",
            *base, f"loop.rounds={rounds}", "progress=false", f"hydra.sweep.dir={sweep_dir}",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]

    run(1)
    (job,) = [p.parent for p in sweep_dir.glob("*/history.csv")]
    assert "seed=0,strategy=random" in job.name
    assert "loop.rounds" not in job.name and "root" not in job.name and "progress" not in job.name
    run(2)
    assert [p.parent for p in sweep_dir.glob("*/history.csv")] == [job]
    assert pd.read_csv(job / "history.csv")["n_labeled"].tolist() == [20, 30, 40]


def test_a_job_folder_name_past_the_file_system_limit_is_shortened_stably():
    """Hydra's override_dirname of many overrides is longer than a folder name may be (255
    bytes): the job folder keeps its start and end around a hash of the whole name."""
    from regal_torch.neutral_keys import job_folder

    short = "seed=0,strategy=random"
    assert job_folder(short) == short
    long = ",".join(f"data.option_{i}=é{i}" for i in range(40))  # multi-byte characters too
    name = job_folder(long)
    assert len(name.encode()) <= 255 and name == job_folder(long)
    assert name.startswith("data.option_0=é0") and name.endswith("data.option_39=é39")
    assert job_folder(long.replace("é39", "é38")) != name
