"""The QM9 study's data and model, trained once on a given labeled set (for the study scripts).

``bench_qm9_study_noise.py``, ``bench_qm9_study_chemprop.py`` and
``bench_qm9_study_uncertainty.py`` train the study's model (``experiment=qm9_gap_benchmark``)
outside the loop on random labeled sets; this holds the shared steps.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from regal_torch.run import CONFIG_DIR


def study_config(overrides: list[str] | None = None):
    """The composed config of ``experiment=qm9_gap_benchmark`` plus ``overrides``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="config", overrides=["experiment=qm9_gap_benchmark", *(overrides or [])]
        )


def random_pool_order(dm, seed: int) -> torch.Tensor:
    """The datamodule's pool positions in a random order (permutation seed ``seed``), ``[P]``."""
    return dm.pool[torch.randperm(len(dm.pool), generator=torch.Generator().manual_seed(seed))]


def fit_on(cfg, dataset, picks: torch.Tensor, seed: int = 0):
    """Train ``cfg``'s model from scratch on the pool molecules ``picks`` (true labels).

    No validation during training, no logger, no progress bar; ``seed`` seeds weights,
    dropout and batch order.

    Returns:
        ``(datamodule, model, trainer, seconds of Trainer.fit)``.
    """
    dm = instantiate(cfg.data.datamodule, dataset=dataset)
    dm.label(picks, dm.truth[picks])
    pl.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)(
        node_dim=dataset.num_node_features, edge_dim=dataset.num_edge_features
    )
    trainer = instantiate(cfg.trainer)(limit_val_batches=0, logger=False, enable_progress_bar=False)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer, time.perf_counter() - start
