"""A round's acquisition: predict the round's candidates (only what the strategy uses),
select a batch and hand it to the labelling (learn mode: ask for its labels).

The candidates are the pool, or with ``loop.candidates=m`` a fresh random subset of ``m``
pool molecules drawn from the round's seed. The predictions the strategy sees go through the
round's recalibration first. Under DDP the first process selects and the others take its
picks.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.loop.labelling import Labelling
from regal_torch.loop.scoring import predict_positions
from regal_torch.loop.seeds import CANDIDATES, SELECT, SKETCH, round_seed
from regal_torch.models.prediction import PredictionRequest
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.uncertainty.local_calibration import Recalibration

__all__ = ["acquire", "pool_request", "round_candidates"]


def pool_request(
    strategy: Strategy, cfg: DictConfig, learn: bool, r: int
) -> PredictionRequest | None:
    """What round ``r``'s pool (and labeled) prediction must hold: what the strategy uses,
    plus mean and variance for learn mode's query file and the embedding for the local
    variance; None when nothing is needed (``strategy=random`` in benchmark mode). Gradient
    sketches are drawn from the round's own seed."""
    request = strategy.request()
    extra = {"mean", "var"} if learn else set()
    if request is None and not extra:
        return None
    request = request or PredictionRequest(frozenset())
    fields = set(request.fields) | extra
    if cfg.loop.get("local_neighbours") is not None and request.uncertainty:
        fields.add("embedding")
    seed = round_seed(cfg.seed, r, SKETCH)
    return replace(request, fields=frozenset(fields), sketch_seed=seed)


def round_candidates(pool: torch.Tensor, m: int | None, seed: int, r: int) -> torch.Tensor:
    """Round ``r``'s candidates among ``pool`` ``[n]``: all of it, or ``m`` of them in pool
    order, drawn from the round's seed, ``[m]``."""
    if m is None or m >= len(pool):
        return pool
    generator = torch.Generator().manual_seed(round_seed(seed, r, CANDIDATES))
    return pool[torch.randperm(len(pool), generator=generator)[:m].sort().values]


def acquire(
    r: int,
    trainer: pl.Trainer,
    model: pl.LightningModule,
    recalibrate: Recalibration,
    cfg: DictConfig,
    strategy: Strategy,
    dm: ActiveDataModule,
    labels: Labelling,
    main: bool,
) -> tuple[float, float]:
    """Pick round ``r``'s batch and ask for its labels; returns the seconds of the prediction
    and of the selection."""
    learn = cfg.mode == "learn"
    labeled = dm.labeled
    candidates = round_candidates(dm.pool, cfg.loop.get("candidates"), cfg.seed, r)
    start = time.perf_counter()
    request = pool_request(strategy, cfg, learn, r)
    pool = on_labeled = None
    if request is not None:
        pool = recalibrate(predict_positions(trainer, model, dm, candidates, r, request))
        if strategy.needs_labeled_prediction:
            on_labeled = recalibrate(predict_positions(trainer, model, dm, labeled, r, request))
    seconds_predict = time.perf_counter() - start
    start = time.perf_counter()
    context = SelectionContext(
        pool=candidates,
        labeled=labeled,
        generator=torch.Generator().manual_seed(round_seed(cfg.seed, r, SELECT)),
        labeled_prediction=on_labeled,
        labeled_targets=dm.labels[labeled],
    )
    picks = strategy.select(pool, cfg.loop.batch_size, context) if main else None
    picks = trainer.strategy.broadcast(picks, src=0)
    seconds_select = time.perf_counter() - start
    mean = std = None
    if learn and main:  # the query file shows the picks' predictions
        row_of = {p: i for i, p in enumerate(candidates.tolist())}
        chosen = pool.index_select(torch.tensor([row_of[p] for p in picks.tolist()]))
        mean, std = chosen.mean, chosen.std
    labels.ask(r, picks, mean, std)
    return seconds_predict, seconds_select
