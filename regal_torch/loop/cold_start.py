"""The initial labeled set of a benchmark run: picked by a strategy before any label exists.

``loop/initial_strategy`` (a strategy config, ``random`` by default) picks
``loop.initial_size`` pool molecules with an empty labeled set, on features that need no label
(``loop.initial_features``):

- ``model``: a prediction of the run's model, untrained (round 0's architecture with weights
  drawn from the run's seed): its embedding, or its gradient features for ``kernel=grad``;
  random message-passing networks already place molecules of similar structure close together;
- ``fingerprint``: Morgan fingerprints (radius 2, 2,048 bits) as the embedding.

On a table (``data=table``) only ``model`` applies: the untrained network sees the features
standardised on the whole pool (no row is labeled yet).

``random`` needs no features and draws exactly the set the loop drew before this option existed.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.errors import RegalError
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import Prediction
from regal_torch.models.tanimoto import morgan_fingerprints
from regal_torch.strategies.base import SelectionContext, Strategy

FEATURES = ("model", "fingerprint")


def initial_picks(
    cfg: DictConfig, strategy: Strategy, dataset, dm: ActiveDataModule, seed: int
) -> torch.Tensor:
    """Dataset positions of the ``loop.initial_size`` initial picks of ``strategy`` (the
    ``loop/initial_strategy``), ``[initial_size]``.

    ``seed`` seeds the strategy's generator and the untrained model's weights.
    """
    features = cfg.loop.get("initial_features", "model")
    if features not in FEATURES:
        raise RegalError(f"loop.initial_features={features!r} must be one of {', '.join(FEATURES)}")
    request = strategy.request()
    prediction = trainer = None
    if request is not None and features == "fingerprint" and dataset.num_edge_features is None:
        raise RegalError(
            "loop.initial_features=fingerprint needs molecules, and this data is a table: "
            "use loop.initial_features=model (an untrained network on the standardised features)"
        )
    if request is not None and features == "fingerprint":
        smiles = [dataset.smiles[i] for i in dm.pool.tolist()]
        embedding = morgan_fingerprints(smiles)
        prediction = Prediction(mean=torch.zeros(len(smiles)), embedding=embedding)
    elif request is not None:
        pl.seed_everything(seed, verbose=False)
        # no labels: scale on the pool (checks.check_capabilities: the model predicts untrained)
        model = instantiate(cfg.model)(**dm.model_inputs(dm.pool))
        trainer = instantiate(cfg.trainer)(
            logger=False, enable_progress_bar=False, enable_model_summary=False
        )
        prediction = predict(trainer, model, dm.loader(dm.pool), request)
        # Lightning lets predict run on to its end; under DDP any process's signal stops all
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            raise RegalError(
                "stopped by SIGTERM while picking the initial set; nothing was recorded: "
                "run the same command again to start"
            )
    context = SelectionContext(
        pool=dm.pool,
        labeled=torch.empty(0, dtype=torch.long),
        generator=torch.Generator().manual_seed(seed),
    )
    picks = strategy.select(prediction, cfg.loop.initial_size, context)
    # Under DDP every process picks from the same gathered prediction; the first one's count.
    return picks if trainer is None else trainer.strategy.broadcast(picks, src=0)
