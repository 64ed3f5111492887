"""Shared fixtures."""

from __future__ import annotations

import gpytorch
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9 import QM9Dataset
from regal_torch.run import CONFIG_DIR, quiet_trainer  # noqa: F401 (tests import it from here)


@pytest.fixture(scope="session")
def qm9_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Cache folder of the session's QM9 subsets (pass as ``data.dataset.root``)."""
    return str(tmp_path_factory.mktemp("qm9"))


@pytest.fixture(scope="session")
def qm9_small(qm9_root: str) -> QM9Dataset:
    """A real 300-molecule QM9 subset (seed 0), built once per session (about 1 s)."""
    return QM9Dataset(qm9_root, subset=300, log=False)


@pytest.fixture(scope="session")
def tiny(qm9_root: str, qm9_small: QM9Dataset) -> list[str]:
    """Overrides for a run of a few seconds on the cached 300-molecule subset.

    (Depends on ``qm9_small`` so that the subset is built by that fixture.)
    """
    return [
        # the network without molecule features, LCMD, the model's own variance: what most
        # tests check (the defaults before the molecule-features study)
        "model=mc_dropout",
        "data.features=[]",
        "strategy=lcmd",
        "loop.local_neighbours=null",
        "data.subset=300",
        f"data.dataset.root={qm9_root}",
        "data.datamodule.test_size=50",
        "data.datamodule.val_size=20",
        "loop.initial_size=20",
        "loop.batch_size=10",
        "loop.rounds=2",
        "trainer.max_epochs=2",
        "model.hidden_dim=16",
        "model.mc_samples=4",
    ]


def compose_config(overrides: list[str]) -> DictConfig:
    """The run config that ``python -m regal_torch.run OVERRIDES`` would get."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def check_joint_covariance(pred, rows_cols: tuple[list[int], list[int]], rtol: float):
    """Assert that ``pred.covariance`` is one joint covariance over all rows: symmetric,
    positive definite, diagonal ``pred.var`` (to ``rtol``), and any block (``rows_cols``) the
    dense matrix's block. Returns the dense ``[N, N]`` matrix."""
    everyone = torch.arange(len(pred))
    dense = pred.covariance(everyone, everyone)
    assert torch.allclose(dense, dense.T, atol=1e-6)
    assert torch.linalg.eigvalsh(dense.double()).min() > 0
    assert torch.allclose(dense.diagonal(), pred.var, rtol=rtol)
    r, c = (torch.tensor(index) for index in rows_cols)
    assert torch.allclose(pred.covariance(r, c), dense[r][:, c], atol=1e-6)
    return dense


def gpytorch_posterior(model, dm: ActiveDataModule, inputs: torch.Tensor):
    """GPyTorch's own dense posterior of a GP regressor's ``gp`` at GP ``inputs`` (``[N, D]``),
    conditioned on the labeled set, in original units: mean ``[N]``, covariance ``[N, N]``."""
    train_x, train_y = model.training_set(dm.loader(dm.labeled, dm.labels[dm.labeled]))
    gp = model.gp.eval()
    gp.set_train_data(train_x, train_y, strict=False)
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        want = gp.likelihood(gp(inputs))
    std = model.target_std
    return want.mean * std + model.target_mean, want.covariance_matrix * std**2


@pytest.fixture
def seen_by_uncertainty(monkeypatch: pytest.MonkeyPatch) -> list:
    """The pool predictions ``strategy=uncertainty`` is given, in order, during the test."""
    from regal_torch.strategies.uncertainty import UncertaintyStrategy

    seen = []
    original = UncertaintyStrategy._select_rows

    def spy(self, prediction, k, context):
        seen.append(prediction)
        return original(self, prediction, k, context)

    monkeypatch.setattr(UncertaintyStrategy, "_select_rows", spy)
    return seen


@pytest.fixture
def batch(qm9_small: QM9Dataset):
    """One prediction batch of 40 molecules of the 300-molecule subset."""
    dm = ActiveDataModule(qm9_small, "gap", val_size=0, test_size=0, predict_batch_size=40)
    return next(iter(dm.loader(dm.pool[:40])))
