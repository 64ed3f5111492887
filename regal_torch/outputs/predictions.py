"""Predictions as a table: every molecule's mean, the std the run uses and its interval.

:func:`predict_with_std` predicts a set of molecules in chunks (so that no embedding of the
whole set is held) and gives each one's mean and std: the local one with
``loop.local_neighbours``, else the model's variance times the validation factor.
:func:`prediction_frame` makes the table (``id``, ``smiles``, ``mean``, ``std`` and the
split-conformal interval ``lower``, ``upper``, :mod:`regal_torch.uncertainty.conformal`) and
:func:`write_table` writes it: one CSV file, or above ``chunk_rows`` rows a folder of Parquet
parts (``part-00000.parquet``, ...) that ``pandas.read_parquet(folder)`` reads as one table.
Every file appears whole (a temporary name renamed into place).
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

from regal_torch.errors import RegalError
from regal_torch.files import atomic_write_bytes, write_csv
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.uncertainty.local_calibration import NeighbourCalibration

__all__ = ["predict_with_std", "prediction_frame", "set_names", "write_table"]


def predict_with_std(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    loader: Callable[[Tensor], DataLoader],
    positions: Tensor,
    var_scale: float,
    local: NeighbourCalibration | None,
    chunk: int = 20000,
    stop: Callable[[], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """The mean and the std the run uses (the local one with ``local``, else the variance
    times the validation factor ``var_scale``) of every molecule of ``positions``, predicted
    ``chunk`` molecules at a time (``loader`` makes a loader over positions).

    ``stop`` is called after each chunk (it raises to end the prediction, e.g. on SIGTERM).

    Shapes:
        positions: ``[N]`` -> mean ``[N]``, std ``[N]``.
    """
    fields = {"mean", "var"} | ({"embedding"} if local is not None else set())
    request = PredictionRequest(frozenset(fields))
    means, stds = [], []
    for part in positions.split(chunk):
        prediction = predict(trainer, model, loader(part), request)
        if stop is not None:
            stop()
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


def write_table(path: Path, frame: pd.DataFrame, chunk_rows: int, hint: str = "") -> Path:
    """Write ``frame`` as the CSV file ``path``, or, above ``chunk_rows`` rows, as the folder
    ``path`` less its suffix, of ``part-XXXXX.parquet`` files of ``chunk_rows`` rows each;
    returns what was written.

    Whichever form is written replaces the other (a run that grew past ``chunk_rows``); both
    appear at once (a temporary file or folder renamed into place). ``hint`` is said when a
    file cannot be written.

    Raises:
        RegalError: a file cannot be written.
    """
    path = Path(path)
    folder = path.with_suffix("")
    if len(frame) <= chunk_rows:
        write_csv(path, frame, hint)
        shutil.rmtree(folder, ignore_errors=True)
        return path
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as exc:
        raise RegalError(f"{folder}: cannot write it ({exc.strerror or exc}){hint}") from exc
    for part, start in enumerate(range(0, len(frame), chunk_rows)):
        buffer = io.BytesIO()
        frame[start : start + chunk_rows].to_parquet(buffer, index=False)
        atomic_write_bytes(partial / f"part-{part:05d}.parquet", buffer.getvalue(), hint)
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    path.unlink(missing_ok=True)
    return folder
