"""What a run leaves its user: the model's predictions for every molecule, and the model.

At the end of a run (and after every round with ``predict.every_round=true``) the loop
predicts every molecule of the dataset with the round's model and writes

- ``predictions.csv`` (``predictions_round_XXX.csv`` for a round before the last): one row
  per molecule with ``id``, ``smiles``, ``set`` (``labeled``, ``pool``, ``val``, ``test`` or
  ``failed``), ``label`` (the labeled, validation and test molecules' labels; empty for the
  pool), ``mean``, ``std`` (recalibrated on the validation molecules) and ``lower``,
  ``upper``: the split-conformal interval of ``predict.interval`` coverage
  (:mod:`regal_torch.conformal`). Above ``predict.chunk_rows`` rows the table is a folder
  ``predictions/`` of files ``part-00000.csv``, ... of that many rows each;
- ``model.ckpt``: the model, with what rebuilds it (:mod:`regal_torch.saved_model`).

Every file is written to a temporary name and renamed, so a kill never leaves a half file.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from torch import Tensor

from regal_torch.loop.state import atomic_write_bytes
from regal_torch.models.prediction import Prediction

__all__ = ["prediction_frame", "set_names", "write_table"]


def prediction_frame(
    ids: Sequence[str],
    smiles: Sequence[str],
    prediction: Prediction,
    var_scale: float,
    conformal_q: float,
) -> pd.DataFrame:
    """``id``, ``smiles``, ``mean``, ``std`` (the variance times ``var_scale``) and the
    interval ``mean -+ conformal_q * std_raw`` of the predicted molecules.

    Shapes:
        ids, smiles: ``N`` strings, aligned with ``prediction``'s rows.
    """
    raw = prediction.var.sqrt()
    half = conformal_q * raw
    return pd.DataFrame(
        {
            "id": list(ids),
            "smiles": list(smiles),
            "mean": prediction.mean.numpy(),
            "std": (prediction.var * var_scale).sqrt().numpy(),
            "lower": (prediction.mean - half).numpy(),
            "upper": (prediction.mean + half).numpy(),
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
