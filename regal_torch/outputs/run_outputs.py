"""What the loop writes when a run ends (and after each round with ``predict.every_round``).

``predictions.csv`` (``predictions_round_XXX.csv`` for a round before the last): one row per
molecule of the dataset with ``id``, ``smiles``, ``set`` (``labeled``, ``pool``, ``val``,
``test`` or ``failed``), ``label`` (the labeled, validation and test molecules' labels; empty
for the pool), ``mean``, ``std`` (the std the run uses: recalibrated on the validation
molecules, or their local variance with ``loop.local_neighbours``) and ``lower``, ``upper``:
the split-conformal interval of ``predict.interval`` coverage. Above ``predict.chunk_rows``
rows the table is a folder ``predictions/`` of Parquet parts
(:func:`regal_torch.outputs.predictions.write_table`). And ``model.ckpt``: the model, its
calibration and the run's data card (:mod:`regal_torch.outputs.model_file`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor

from regal_torch.files import RUN_HINT
from regal_torch.outputs.data_card import DataCard
from regal_torch.outputs.model_file import MODEL_FILE, Calibration, save_model
from regal_torch.outputs.predictions import (
    predict_with_std,
    prediction_frame,
    set_names,
    write_table,
)
from regal_torch.uncertainty.local_calibration import NeighbourCalibration

__all__ = ["write_run_outputs"]


def write_run_outputs(
    run_dir: Path,
    name: str,
    trainer: pl.Trainer,
    model: pl.LightningModule,
    dm,  # noqa: ANN001  (an ActiveDataModule)
    failed: Tensor,
    calibration: Calibration,
    local: NeighbourCalibration | None,
    card: DataCard,
    chunk_rows: int,
    main: bool,
    stop: Callable[[], None],
) -> None:
    """Predict every molecule of ``dm``'s dataset with ``model`` and write the table ``name``
    (``predictions.csv`` or ``predictions_round_XXX.csv``) and ``model.ckpt`` in ``run_dir``.

    Every process of a multi-process Trainer predicts (its shard); only the ``main`` one
    writes. ``failed`` are the positions whose label could not be computed; ``stop`` is
    called after each chunk of the prediction (it raises on SIGTERM).
    """
    dataset = dm.dataset
    n = len(dataset)
    mean, std = predict_with_std(
        trainer, model, dm.loader, torch.arange(n), calibration.var_scale, local,
        chunk=200 * dm.predict_batch_size, stop=stop,
    )  # fmt: skip
    if not main:
        return
    frame = prediction_frame(dm.ids, dataset.smiles, mean, std, calibration.conformal_q)
    sets = {"labeled": dm.labeled, "val": dm.val, "test": dm.test, "failed": failed}
    frame.insert(2, "set", set_names(n, sets))
    label = torch.full((n,), math.nan)
    label[dm.labeled] = dm.labels[dm.labeled]
    held = torch.cat([dm.val, dm.test])
    label[held] = dm.truth[held]
    frame.insert(3, "label", label.numpy())
    write_table(Path(run_dir) / name, frame, chunk_rows, RUN_HINT)
    save_model(Path(run_dir) / MODEL_FILE, model, calibration, card)
