"""``python -m regal_torch.report``: on a real sweep, and its arithmetic on known histories."""

import subprocess
import sys

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread
from test_sweeps import assert_complete_sweep, sweep

from regal_torch.errors import RegalError
from regal_torch.report.cli import main, report
from regal_torch.report.runs import find_runs, read_run
from regal_torch.report.summary import area_under_curve, labels_to_reach


@pytest.fixture(scope="module")
def real_sweep(tiny, qm9_small, tmp_path_factory):
    """A basic-launcher sweep: strategy random, uncertainty x seed 0, 1, tiny runs."""
    sweep_dir = tmp_path_factory.mktemp("real") / "sweep"
    out = sweep(tiny, sweep_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    return sweep_dir


def _report_cli(*args):
    cmd = [sys.executable, "-m", "regal_torch.report", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _assert_png(path, min_width=800, min_height=400):
    image = imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_basic_launcher_sweep_runs_every_job(real_sweep):
    assert_complete_sweep(real_sweep)


def test_report_on_a_real_sweep(real_sweep):
    out = _report_cli(real_sweep)
    assert out.returncode == 0, out.stderr
    report_dir = real_sweep / "report"
    _assert_png(report_dir / "learning_curves.png")
    _assert_png(report_dir / "calibration.png")  # the loop records test_nll, test_spearman, ...
    summary = pd.read_csv(report_dir / "summary.csv")
    assert summary["strategy"].tolist() == ["random", "uncertainty"]
    assert summary["model"].tolist() == ["mc_dropout"] * 2
    assert summary["n_seeds"].tolist() == [2, 2] and summary["final_n_labeled"].tolist() == [40, 40]
    for row in summary.itertuples():
        finals = [
            pd.read_csv(p)["test_mae"].iloc[-1]
            for p in real_sweep.glob(f"*strategy={row.strategy}*/history.csv")
        ]
        assert row.final_mae_mean == pytest.approx(np.mean(finals))
        assert row.final_mae_std == pytest.approx(np.std(finals, ddof=1))
    assert summary["random_final_mae"].tolist() == [summary["final_mae_mean"][0]] * 2
    assert "| random | mc_dropout | 2 | 40 |" in out.stdout
    assert "| uncertainty | mc_dropout | 2 | 40 |" in out.stdout
    markdown = (report_dir / "summary.md").read_text()
    assert "final MAE (eV)" in markdown and "| uncertainty | mc_dropout | 2 | 40 |" in markdown


# Hand-written histories with known answers. Mean test MAE over the two seeds:
# random [1.1, 0.9, 0.7], uncertainty [1.0, 0.6, 0.4], fft [1.3, 1.2] (its seed 1 stopped at
# 200 labels), all at n_labeled 100, 200, 300. Random's final mean MAE 0.7 is reached by
# uncertainty between 100 (1.0) and 200 (0.6): 100 + 100 * 0.3 / 0.4 = 175 labels.
KNOWN = {
    ("random", "mc_dropout", 0): [1.0, 0.8, 0.6],
    ("random", "mc_dropout", 1): [1.2, 1.0, 0.8],
    ("uncertainty", "mc_dropout", 0): [1.0, 0.7, 0.5],
    ("uncertainty", "mc_dropout", 1): [1.0, 0.5, 0.3],
    ("fft", "mc_dropout", 0): [1.3, 1.2, 1.1],
    ("fft", "mc_dropout", 1): [1.3, 1.2],
    ("uncertainty", "ensemble", 0): [0.9, 0.8, 0.7],
}


def _write_run(run_dir, strategy, model, mae, calibration=True, choices=True):
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {
        "data": {"target": "gap", "dataset": {"_target_": "regal_torch.data.qm9.QM9Dataset"}},
        "model": {"_target_": f"regal_torch.models.{model}.Model"},
        "strategy": {"_target_": f"regal_torch.strategies.{strategy}.RandomStrategy"},
    }
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if choices:
        choices = {
            "data": "qm9",
            "strategy": strategy,
            "model": model,
            "loop/initial_strategy": "random",
            "hydra/launcher": "basic",  # Hydra's own groups never name a group
        }
        hydra = {"hydra": {"runtime": {"choices": choices}}}
        (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    history = pd.DataFrame(
        {
            "round": range(len(mae)),
            "n_labeled": [100, 200, 300][: len(mae)],
            "seconds_train": 1.0,
            "test_mae": mae,
            "test_rmse": [1.25 * m for m in mae],
            "test_r2": 0.5,
            "seconds_test": 0.1,
            "unit": "eV",  # the loop writes the target's unit with the numbers
        }
    )
    if calibration:
        history["test_nll"] = [2.0 * m for m in mae]
        history["test_nll_recal"] = [m for m in mae]
    history.to_csv(run_dir / "history.csv", index=False)


@pytest.fixture
def known(tmp_path):
    for (strategy, model, seed), mae in KNOWN.items():
        _write_run(tmp_path / "sweep" / f"{strategy}-{model}-{seed}", strategy, model, mae)
    return tmp_path / "sweep"


def test_summary_arithmetic_on_known_histories(known, tmp_path, capsys):
    report([known], tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index(["strategy", "model"])
    unc, rnd = summary.loc["uncertainty", "mc_dropout"], summary.loc["random", "mc_dropout"]
    assert unc.final_mae_mean == pytest.approx(0.4)
    assert unc.final_mae_std == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert unc.final_rmse_mean == pytest.approx(0.5)
    assert unc.auc_mae == pytest.approx((0.8 * 100 + 0.5 * 100) / 200)
    assert rnd.auc_mae == pytest.approx((1.0 * 100 + 0.8 * 100) / 200)
    assert unc.labels_to_random_mae == pytest.approx(175)
    assert unc.saving_pct == pytest.approx(100 * (1 - 175 / 300))
    assert rnd.labels_to_random_mae == pytest.approx(300) and rnd.saving_pct == pytest.approx(0)
    fft = summary.loc["fft", "mc_dropout"]
    assert fft.final_n_labeled == 200 and fft.final_mae_mean == pytest.approx(1.2)
    assert np.isnan(fft.labels_to_random_mae) and np.isnan(fft.saving_pct)
    ens = summary.loc["uncertainty", "ensemble"]
    assert np.isnan(ens.random_final_mae) and np.isnan(ens.labels_to_random_mae)
    printed = capsys.readouterr().out
    assert "| fft | mc_dropout | 2 | 200 | 1.2000 ± 0.0000 |" in printed
    assert "not reached" in printed
    assert "no strategy=random runs for model(s) ensemble" in printed
    assert "| uncertainty | mc_dropout | 2 | 300 | 0.4000 ± 0.1414 |" in printed
    assert "| 175 | 42% |" in printed
    assert (tmp_path / "out" / "summary.md").read_text().count("not reached") == 2  # MAE, RMSE
    # RMSE is 1.25 x MAE: random's final 0.875 is reached at 100 + 100 * 0.375 / 0.5 = 175
    assert unc.labels_to_random_rmse == pytest.approx(175)
    assert unc.saving_rmse_pct == pytest.approx(100 * (1 - 175 / 300))
    assert unc.rmse_reduction_pct == pytest.approx(100 * (1 - 0.5 / 0.875))
    assert unc.worst_mae_vs_random_pct == pytest.approx(100 * (1.0 / 1.1 - 1))  # never worse
    # fft stops at 200 labels: compared with random at 100 and 200 only
    assert fft.worst_mae_vs_random_pct == pytest.approx(100 * (1.2 / 0.9 - 1))
    assert fft.rmse_reduction_pct == pytest.approx(100 * (1 - 1.2 / 0.9))
    assert unc.seconds_train == pytest.approx(1.0) and np.isnan(unc.seconds_select)
    assert unc.final_nll_recal == pytest.approx(0.4) and np.isnan(unc.final_spearman)


def test_labels_to_reach_and_auc_edge_cases():
    n = np.array([10.0, 20.0, 40.0])
    assert labels_to_reach(n, np.array([0.5, 0.4, 0.3]), 0.6) == 10
    assert labels_to_reach(n, np.array([0.9, 0.8, 0.4]), 0.6) == pytest.approx(30)
    assert labels_to_reach(n, np.array([0.9, 0.5, 0.4]), 0.5) == 20
    assert np.isnan(labels_to_reach(n, np.array([0.9, 0.8, 0.7]), 0.6))
    assert area_under_curve(n, np.array([1.0, 1.0, 0.4])) == pytest.approx((10 + 14) / 30)
    assert area_under_curve(n[:1], np.array([0.7])) == 0.7


def test_plots_axes_and_calibration_figure(known, tmp_path, monkeypatch):
    figures = []
    save = matplotlib.figure.Figure.savefig

    def keep(self, path, **kwargs):
        figures.append(self)
        save(self, path, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    report([known], tmp_path / "out", loglog=True)
    curves, calibration = figures
    labels = [(ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) for ax in curves.axes]
    assert labels == [
        ("labeled molecules", "test MAE (eV)", "log"),
        ("labeled molecules", "test RMSE (eV)", "log"),
        ("labeled molecules", "test MAE vs random, same labels (%)", "log"),
    ]
    assert len(curves.axes[0].get_lines()) == 4  # strategy x model groups
    # relative panel: the 3 mc_dropout groups (ensemble has no random runs) and the zero line
    relative = [list(line.get_ydata()) for line in curves.axes[2].get_lines()]
    assert len(relative) == 4
    uncertainty = [100 * (u / r - 1) for u, r in zip([1.0, 0.6, 0.4], [1.1, 0.9, 0.7], strict=True)]
    assert any(y == pytest.approx(uncertainty) for y in relative if len(y) == 3)
    (nll,) = [ax for ax in calibration.axes if ax.get_visible()]
    assert nll.get_ylabel() == "test Gaussian NLL (nats)" and len(nll.get_lines()) == 8
    _assert_png(tmp_path / "out" / "learning_curves.png")
    _assert_png(tmp_path / "out" / "calibration.png", min_width=300, min_height=300)


def test_no_calibration_columns_skips_the_figure(tmp_path, capsys):
    for seed in (0, 1):
        _write_run(tmp_path / f"r{seed}", "random", "mc_dropout", [1.0, 0.9], calibration=False)
    report([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out" / "calibration.png").exists()
    assert "calibration.png not written" in capsys.readouterr().out
    assert (tmp_path / "out" / "learning_curves.png").is_file()


def test_names_fall_back_to_class_names(tmp_path):
    _write_run(tmp_path / "run", "random", "mc_dropout", [1.0], choices=False)
    (path,) = find_runs([tmp_path])
    run = read_run(path)
    assert (run.data, run.strategy, run.model) == ("QM9Dataset", "RandomStrategy", "Model")
    assert run.unit == "eV"


def test_the_unit_is_read_from_history_not_guessed_from_the_dataset(tmp_path):
    _write_run(tmp_path / "run", "random", "mc_dropout", [1.0])
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    history.assign(unit="D").to_csv(tmp_path / "run" / "history.csv", index=False)
    assert read_run(tmp_path / "run").unit == "D"  # a QM9 run of mu, in debye
    history.drop(columns="unit").to_csv(tmp_path / "run" / "history.csv", index=False)
    assert read_run(tmp_path / "run").unit == ""  # a run that wrote none: no unit shown


def test_runs_of_different_targets_are_refused(tmp_path):
    _write_run(tmp_path / "a", "random", "mc_dropout", [1.0])
    _write_run(tmp_path / "b", "random", "mc_dropout", [1.0])
    config = tmp_path / "b" / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("target: gap", "target: homo"))
    with pytest.raises(RegalError, match=r"different targets \(qm9 gap, qm9 homo\)"):
        report([tmp_path], tmp_path / "out")


def test_a_run_older_than_the_unit_column_joins_the_others(tmp_path, capsys):
    """A sweep resumed across versions: old runs wrote no unit, new ones do."""
    _write_run(tmp_path / "a", "random", "mc_dropout", [1.0])
    _write_run(tmp_path / "b", "random", "mc_dropout", [1.0])
    history = pd.read_csv(tmp_path / "b" / "history.csv")
    history.drop(columns="unit").to_csv(tmp_path / "b" / "history.csv", index=False)
    report([tmp_path], tmp_path / "out")
    assert "(eV)" in (tmp_path / "out" / "summary.md").read_text()
    history.assign(unit="meV").to_csv(tmp_path / "b" / "history.csv", index=False)
    with pytest.raises(RegalError, match=r"different units \(eV, meV\)"):
        report([tmp_path], tmp_path / "out")


@pytest.mark.parametrize("problem", ["missing dir", "no runs", "missing column", "corrupt config"])
def test_bad_input_is_one_line_and_exit_2(problem, tmp_path, capsys):
    target, expected = tmp_path / "nope", "nope: no such directory"
    if problem == "no runs":
        target, expected = tmp_path, "no runs (folders with history.csv and .hydra/config.yaml)"
    elif problem == "missing column":
        _write_run(tmp_path / "run", "random", "mc_dropout", [1.0])
        history = pd.read_csv(tmp_path / "run" / "history.csv").drop(columns="test_rmse")
        history.to_csv(tmp_path / "run" / "history.csv", index=False)
        target, expected = tmp_path, "history.csv: missing required column(s) test_rmse"
    elif problem == "corrupt config":
        _write_run(tmp_path / "run", "random", "mc_dropout", [1.0])
        (tmp_path / "run" / ".hydra" / "config.yaml").write_text("data: [unclosed\n")
        target, expected = tmp_path, "config.yaml: cannot be read"
    assert main([str(target), "--out", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_command_line_error_has_no_traceback(tmp_path):
    out = _report_cli(tmp_path / "nope")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path / 'nope'}: no such directory"


def test_default_output_folder(known, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(known)]) == 0  # one DIR: DIR/report
    assert (known / "report" / "summary.md").is_file()
    assert main([str(known), str(known)]) == 0  # several DIRs: ./report
    assert (tmp_path / "report" / "summary.md").is_file()


def test_runs_differing_in_an_option_other_than_the_seed_are_separate_groups(tmp_path, capsys):
    """LCMD with and without loop.candidates in one folder: two groups, named by the option;
    a neutral option (loop.rounds) and an option older runs lack do not split a group."""
    maes = {None: [1.0, 0.8, 0.7], 20000: [1.0, 0.7, 0.5]}
    for candidates, mae in maes.items():
        for seed in (0, 1):
            run = tmp_path / "sweep" / f"lcmd-{candidates}-{seed}"
            _write_run(run, "lcmd", "mc_dropout", mae)
            config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
            config["seed"] = seed
            config["loop"] = {"candidates": candidates, "rounds": 2 + seed}
            if seed == 1:
                config["strategy"]["half_features"] = False  # absent from seed 0's config
            (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    for seed in (0, 1):  # a cold start: the group's choice names it, not its options
        run = tmp_path / "sweep" / f"lcmd-cold-{seed}"
        _write_run(run, "lcmd", "mc_dropout", [0.9, 0.6, 0.5])
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        config["loop"] = {"candidates": 20000, "initial_strategy": {"_target_": "x.KMeansPP"}}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"]["choices"]["loop/initial_strategy"] = "kmeanspp"
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    # a run older than loop/initial_strategy joins the one group it agrees with (candidates
    # null; with 20000 it would fit two groups and stay apart)
    old = tmp_path / "sweep" / "lcmd-old"
    _write_run(old, "lcmd", "mc_dropout", [1.0, 0.8, 0.7])
    config = yaml.safe_load((old / ".hydra" / "config.yaml").read_text())
    (old / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({**config, "seed": 2, "loop": {"candidates": None}})
    )
    hydra = yaml.safe_load((old / ".hydra" / "hydra.yaml").read_text())
    del hydra["hydra"]["runtime"]["choices"]["loop/initial_strategy"]
    (old / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    for seed in (0, 1):
        _write_run(tmp_path / "sweep" / f"random-{seed}", "random", "mc_dropout", [1.0, 0.9, 0.8])
    report([tmp_path / "sweep"], tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("strategy")
    assert sorted(summary.index) == [
        "lcmd [loop.candidates=20000, loop/initial_strategy=kmeanspp]",
        "lcmd [loop.candidates=20000, loop/initial_strategy=random]",
        "lcmd [loop.candidates=None, loop/initial_strategy=random]",
        "random",
    ]
    assert summary["n_seeds"].tolist() == [2, 2, 3, 2]
    plain, cold = "lcmd [loop.candidates=20000, loop/initial_strategy=", "kmeanspp]"
    assert summary.loc[plain + "random]", "final_mae_mean"] == pytest.approx(0.5)
    assert summary.loc[plain + cold, "final_mae_mean"] == pytest.approx(0.5)
    assert summary.loc[plain + cold, "auc_mae"] < summary.loc[plain + "random]", "auc_mae"]
    labels = "lcmd [loop.candidates=None, loop/initial_strategy=random]"
    assert summary.loc[labels, "final_mae_mean"] == pytest.approx(0.7)
    # both variants are compared with random: 0.8 reached at 200 and at 200 labels
    assert summary.loc[labels, "labels_to_random_mae"] == pytest.approx(200)
    assert f"| {plain}{cold} | mc_dropout | 2 |" in capsys.readouterr().out
