"""Bad run inputs refused before any training or feature computation (one ``error:`` line, exit
status 2, no run folder left), and the warning for intervals too few validation molecules
leave infinite."""

import logging
import math
import subprocess
import sys

import pytest
import torch
from conftest import compose_config

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.molecule_graphs import ATOM_FEATURE_DIM, BOND_FEATURE_DIM
from regal_torch.errors import RegalError
from regal_torch.loop.checks import check_budget, check_config
from regal_torch.models.evidential import EvidentialRegressor
from regal_torch.uncertainty.conformal import conformal_quantile, finite_size, too_few_warning


def _run(args):
    cmd = [sys.executable, "-m", "regal_torch.run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _refused(out, run_dir, message):
    """One error line holding ``message``, exit 2, and nothing left of the run folder."""
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1, out.stderr
    assert message in out.stderr, out.stderr
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


def _network(tiny):
    """``tiny`` less the network's options (for model=gp)."""
    return [o for o in tiny if not o.startswith("model")]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.baseline=nope", "data.features=[minimol,xtb]"],
            "model.baseline='nope' is not a feature column of data.features=[minimol, xtb]; "
            "the columns are minimol_0 .. minimol_511, xtb_homo,",
        ),
        (
            ["model.baseline=gap", "data.features=[minimol,xtb]"],
            "model.baseline='gap' is not a feature column of data.features=[minimol, xtb]; "
            "did you mean xtb_gap?",
        ),
        (
            ["model.baseline=[xtb_gap]"],
            "model.baseline=['xtb_gap'] must be null or the name of one feature column",
        ),
        (
            ["model.baseline=xtb_gap", "data.features=[minimol]"],
            "model.baseline='xtb_gap': the baseline column xtb_gap needs the xtb featurizer: "
            "add xtb to data.features (data.features=[minimol, xtb])",
        ),
        (
            ["model.baseline=xtb_gap", "data.features=[]"],
            "the baseline column xtb_gap needs the xtb featurizer: add xtb to data.features "
            "(data.features=[xtb])",
        ),
        (
            ["model.baseline=xtb_gap", "data.features=[xtb]", "data.featurizers.xtb.use=[homo]"],
            "model.baseline='xtb_gap': data.featurizers.xtb.use=[homo] leaves the column gap "
            "out: add gap to it",
        ),
        (
            ["model=gp", "model.fingerprint=false", "data.features=[]"],
            "model.fingerprint=false leaves the GP the molecule features alone, and "
            "data.features is empty: add data.features=[...]",
        ),
        (["data.features=[xtb,xtb]"], "data.features=[xtb, xtb] names a featurizer twice"),
        (["data.features=minimoll"], "data.features: no featurizer 'minimoll' (data.featurizers"),
        (["data.features=3"], "data.features=3 must be a list of featurizer names"),
    ],
)
def test_inputs_the_model_cannot_have_are_refused_from_the_config(overrides, message):
    with pytest.raises(RegalError) as info:
        check_config(compose_config(["model=mc_dropout", *overrides]))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "overrides", [["model.baseline=xtb_gap", "data.features=[minimol,xtb]"], ["model=gp"]]
)
def test_inputs_the_model_can_have_pass(overrides):
    check_config(compose_config(["model=mc_dropout", *overrides]))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.baseline=xtb_gap", "data.features=[minimol]"],
            "error: model.baseline='xtb_gap': the baseline column xtb_gap needs the xtb "
            "featurizer: add xtb to data.features",
        ),
        (
            ["model.baseline=xtb_gap", "data.features=[xtb]", "data.featurizers.xtb.use=[homo]"],
            "data.featurizers.xtb.use=[homo] leaves the column gap out",
        ),
        (["model=gp", "model.fingerprint=false"], "model.fingerprint=false leaves the GP"),
    ],
)
def test_a_baseline_or_gp_without_inputs_is_refused_before_the_dataset_is_built(
    tiny, tmp_path, overrides, message
):
    # a data root of its own that nothing has built: refused before the dataset (and so any
    # feature: xtb and minimol would take many seconds) is made, it is never created
    root, run_dir = tmp_path / "qm9", tmp_path / "run"
    args = [*_network(tiny), *overrides, f"data.dataset.root={root}", f"hydra.run.dir={run_dir}"]
    _refused(_run(args), run_dir, message)
    assert not root.exists()


def test_a_single_featurizer_name_is_a_list_of_one(tiny, tmp_path):
    cfg = compose_config([*tiny, "data.features=minimol"])
    check_config(cfg)
    assert list(cfg.data.features) == ["minimol"]
    assert list(cfg.data.dataset.features) == ["minimol"]  # what the dataset is given
    # not read letter by letter ("no featurizer 'm'"): the baseline check sees [minimol]
    run_dir = tmp_path / "run"
    out = _run([*tiny, "data.features=minimol", "model.baseline=nope", f"hydra.run.dir={run_dir}"])
    _refused(out, run_dir, "model.baseline='nope' is not a feature column of data.features=[mini")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_model_options_are_refused(value):
    with pytest.raises(RegalError, match=f"model.regularizer={value} must be a finite number >= 0"):
        check_config(compose_config(["model=evidential", f"model.regularizer={value}"]))
    with pytest.raises(RegalError, match=f"model.lr={value} must be a finite number > 0"):
        check_config(compose_config(["model=mc_dropout", f"model.lr={value}"]))
    with pytest.raises(RegalError, match=f"model.mc_samples={value} must be an integer >= 2"):
        check_config(compose_config(["model=mc_dropout", f"model.mc_samples={value}"]))
    with pytest.raises(ValueError, match="model.regularizer must be a finite number >= 0"):
        EvidentialRegressor(ATOM_FEATURE_DIM, BOND_FEATURE_DIM, regularizer=float(value))


def test_command_line_infinite_regularizer_exits_2_before_round_0(tiny, tmp_path):
    # it used to train round 0, then fail with a traceback in LCMD
    run_dir = tmp_path / "run"
    out = _run([*_network(tiny), "model=evidential", "model.regularizer=inf",
                f"hydra.run.dir={run_dir}"])  # fmt: skip
    message = "error: model.regularizer=inf must be a finite number >= 0\n"
    _refused(out, run_dir, message)
    assert out.stderr == message


def test_the_fewest_validation_molecules_for_a_finite_interval():
    for coverage, need in [(0.5, 1), (0.8, 4), (0.9, 9), (0.95, 19), (0.99, 99)]:
        assert finite_size(coverage) == need
    for coverage in (0.1, 0.7, 0.9, 0.95, 0.999, 0.6666):
        n = finite_size(coverage)
        assert math.isfinite(conformal_quantile(torch.ones(n), coverage))
        assert math.isinf(conformal_quantile(torch.ones(n - 1), coverage)) or n == 1
    assert too_few_warning(0.9, 9) is None
    assert too_few_warning(0.9, 4) == (
        "predict.interval=0.9 needs at least 9 validation molecules for a finite interval; "
        "there are 4: the interval is infinite (raise data.datamodule.val_size or lower "
        "predict.interval)"
    )


def test_too_few_validation_molecules_warn_once_and_the_run_goes_on(
    tiny, qm9_small, tmp_path, caplog
):
    dm = ActiveDataModule(qm9_small, "gap", test_size=50, val_size=4)
    with caplog.at_level(logging.WARNING, logger="regal_torch.loop.checks"):
        check_budget(compose_config([*tiny, "data.datamodule.val_size=4"]), dm, learn=False)
    assert [r.getMessage() for r in caplog.records] == [too_few_warning(0.9, 4)]
    run_dir = tmp_path / "run"
    out = _run([*tiny, "data.datamodule.val_size=4", "loop.rounds=1", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    warning = "predict.interval=0.9 needs at least 9 validation molecules for a finite interval; "
    assert (out.stdout + out.stderr).count(warning + "there are 4: the interval is infinite") == 1
    assert (run_dir / "run.log").read_text().count(warning) == 1  # once per run, not per round
    # enough validation molecules (tiny has 20): no warning
    caplog.clear()
    dm = ActiveDataModule(qm9_small, "gap", test_size=50, val_size=20)
    with caplog.at_level(logging.WARNING, logger="regal_torch.loop.checks"):
        check_budget(compose_config(tiny), dm, learn=False)
    assert not caplog.records
