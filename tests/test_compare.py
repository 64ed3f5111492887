"""experiment=compare: every distinct strategy as one resumable sweep, then its report."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from regal_torch.run import CONFIG_DIR

DIABETES = Path(__file__).parent / "data" / "diabetes_150.csv"


def test_the_sweep_lists_each_strategy_that_picks_differently_once():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", ["experiment=compare"], return_hydra_config=True)
    strategies = cfg.hydra.sweeper.params.strategy.split(",")
    shipped = {p.stem for p in (Path(CONFIG_DIR) / "strategy").glob("*.yaml")}
    assert set(strategies) == shipped - {"fft", "gsx", "qbc"}  # = maxdist, maxdist, uncertainty
    assert cfg.hydra.sweeper.params.seed == "0,1,2"
    assert cfg.hydra.callbacks.report._target_ == "regal_torch.report.compare.SweepReport"


def _compare(
    tmp_path: Path,
    strategies: str = "random,lcmd",
    model: tuple[str, ...] = ("model=mc_dropout", "model.hidden_dim=8", "model.mc_samples=3"),
) -> tuple[Path, list[str], str]:
    """Run a small comparison (``strategies``, seed 0, one round on 150 rows, ``model``
    overrides); returns its sweep folder, command and standard output."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, "-m", "regal_torch.run", "--multirun", "experiment=compare",
        "data=table", f"data.path={DIABETES}", "data.target_column=target",
        f"strategy={strategies}", "seed=0", *model, "data.datamodule.test_size=20",
        "data.datamodule.val_size=10", "loop.initial_size=10", "loop.batch_size=5",
        "loop.rounds=1", "trainer.max_epochs=1",
        "progress=false", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"report written to {sweep / 'report'}" in out.stdout
    return sweep, cmd, out.stdout


def test_a_comparison_with_a_gp_leaves_out_the_gradient_strategies_and_reports(tmp_path):
    sweep, _, stdout = _compare(tmp_path, "random,lcmd_grad", ("model=gp",))
    assert (
        "skipped: strategy LCMDStrategy needs Prediction.gradients, which model FingerprintGP "
        "does not provide" in stdout
    )
    assert not (sweep / "gp" / "lcmd_grad").exists()
    summary = pd.read_csv(sweep / "report" / "summary.csv")
    assert summary["strategy"].tolist() == ["random"]


def test_a_small_comparison_writes_its_report_into_the_sweep_folder(tmp_path):
    sweep, _, _ = _compare(tmp_path)
    for strategy in ("random", "lcmd"):  # a job's folder is laid out as a single run's
        history = pd.read_csv(sweep / "mc_dropout" / strategy / "seed0" / "history.csv")
        assert history["n_labeled"].tolist() == [10, 15]
    report = sweep / "report"
    assert {p.name for p in report.iterdir()} >= {"learning_curves.png", "summary.csv"}
    summary = pd.read_csv(report / "summary.csv").set_index("strategy")
    assert sorted(summary.index) == ["lcmd", "random"]
    saving = ["labels_to_random_mae", "saving_pct", "labels_to_random_rmse", "saving_rmse_pct"]
    assert set(saving) <= set(summary.columns)
    assert summary.loc["random", "rmse_reduction_pct"] == 0  # random against itself
    assert summary["saving_pct"].notna().all()
    assert "labels to random's final MAE" in (report / "summary.md").read_text()


@pytest.mark.slow
def test_a_rerun_of_a_finished_comparison_resumes_and_reports_again(tmp_path):
    sweep, cmd, _ = _compare(tmp_path)
    (sweep / "report" / "summary.csv").unlink()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("all 1 rounds already done") == 2  # resumed, nothing retrained
    assert f"report written to {sweep / 'report'}" in again.stdout
    assert (sweep / "report" / "summary.csv").is_file()
