"""What a run leaves its user: the model's predictions for every molecule, and the model.

At the end of a run (and after every round with ``predict.every_round=true``) the loop
predicts every molecule of the dataset with the round's model and writes

- ``predictions.csv`` (``predictions_round_XXX.csv`` for a round before the last): one row
  per molecule with ``id``, ``smiles``, ``set`` (``labeled``, ``pool``, ``val``, ``test`` or
  ``failed``), ``label`` (the labeled, validation and test molecules' labels; empty for the
  pool), ``mean``, ``std`` (the std the run uses: recalibrated on the validation molecules,
  or their local variance with ``loop.local_neighbours``) and ``lower``, ``upper``: the
  split-conformal interval of ``predict.interval`` coverage
  (:mod:`regal_torch.conformal`). Above ``predict.chunk_rows`` rows the table is a folder
  ``predictions/`` of files ``part-00000.csv``, ... of that many rows each;
- ``model.ckpt``: the model, with what rebuilds it (:mod:`regal_torch.saved_model`).

Every file is written to a temporary name and renamed, so a kill never leaves a half file.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from regal_torch.local_calibration import NeighbourCalibration
from regal_torch.loop.state import atomic_write_bytes
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest

__all__ = ["predict_with_std", "prediction_frame", "set_names", "write_table"]


def predict_with_std(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    loader: Callable[[Tensor], DataLoader],
    positions: Tensor,
    var_scale: float,
    local: NeighbourCalibration | None,
    chunk: int = 20000,
) -> tuple[Tensor, Tensor]:
    """The mean and the std the run uses (the local one with ``loop.local_neighbours``, else
    the variance times the validation factor ``var_scale``) of every molecule of
    ``positions``, predicted ``chunk`` molecules at a time (``loader`` makes a loader over
    positions), so that no embedding of the whole set is held.

    Shapes:
        positions: ``[N]`` -> mean ``[N]``, std ``[N]``.
    """
    fields = {"mean", "var"} | ({"embedding"} if local is not None else set())
    request = PredictionRequest(frozenset(fields))
    means, stds = [], []
    for part in positions.split(chunk):
        prediction = predict(trainer, model, loader(part), request)
        var = prediction.var * var_scale if local is None else local.variance(prediction)
        means.append(prediction.mean)
        stds.append(var.sqrt())
    if not means:
        return torch.empty(0), torch.empty(0)
    return torch.cat(means), torch.cat(stds)


def prediction_frame(
    ids: Sequence[str], smiles: Sequence[str], mean: Tensor, std: Tensor, conformal_q: float
) -> pd.DataFrame:
    """``id``, ``smiles``, ``mean``, ``std`` and the interval ``mean -+ conformal_q * std`` of
    the predicted molecules.

    Shapes:
        ids, smiles: ``N`` strings; mean, std: ``[N]``.
    """
    half = conformal_q * std
    return pd.DataFrame(
        {
            "id": list(ids),
            "smiles": list(smiles),
            "mean": mean.numpy(),
            "std": std.numpy(),
            "lower": (mean - half).numpy(),
            "upper": (mean + half).numpy(),
        }
    )


def set_names(n: int, sets: dict[str, Tensor]) -> list[str]:
    """The name of the set each of ``n`` dataset positions is in (``sets``: name -> positions;
    a later name wins), ``pool`` for the others."""
    names = ["pool"] * n
    for name, positions in sets.items():
        for p in positions.tolist():
            names[p] = name
    return names


def write_table(path: Path, frame: pd.DataFrame, chunk_rows: int) -> Path:
    """Write ``frame`` as the CSV file ``path``, or, above ``chunk_rows`` rows, as the folder
    ``path`` less its suffix, of ``part-XXXXX.csv`` files; returns what was written.

    Whichever form is written replaces the other (a run that grew past ``chunk_rows``); both
    appear at once (a temporary file or folder renamed into place).
    """
    path = Path(path)
    folder = path.with_suffix("")
    if len(frame) <= chunk_rows:
        atomic_write_bytes(path, _csv(frame))
        shutil.rmtree(folder, ignore_errors=True)
        return path
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for part, start in enumerate(range(0, len(frame), chunk_rows)):
        atomic_write_bytes(
            partial / f"part-{part:05d}.csv", _csv(frame[start : start + chunk_rows])
        )
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    path.unlink(missing_ok=True)
    return folder


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()
