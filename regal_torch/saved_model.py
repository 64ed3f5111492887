"""A run's final model as a file: written at the end of every run, loaded to predict new molecules.

``model.ckpt`` in the run folder is a Lightning-style checkpoint (``state_dict``,
``hyper_parameters``, ``pytorch-lightning_version``) with, under ``regal_torch``, what else
rebuilds the model and its intervals:

- ``model_class``: the regressor's import path; ``target_scaling`` (mean, std and a Delta
  target's baseline) and ``feature_scaling`` (the item features' standardisation);
- ``posterior`` (the GPs): the training inputs and standardised targets they condition on;
- ``calibration``: the validation-fitted variance factor ``var_scale``, the conformal
  quantile ``conformal_q`` and its ``interval`` coverage (:mod:`regal_torch.conformal`);
- ``data``: the run's data config, the feature column names, the molecule featuriser's
  version, the target's name and unit, so that a new file is featurised the same way
  (:mod:`regal_torch.predict`).

The file is written atomically. It is a pickle (as Lightning's checkpoints are): load only
run folders you trust.
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from regal_torch.errors import RegalError
from regal_torch.loop.state import atomic_write_bytes
from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.target_scaling import TargetScaler

__all__ = ["MODEL_FILE", "load_model", "save_model"]

MODEL_FILE = "model.ckpt"


def save_model(path: Path, model: pl.LightningModule, extras: dict[str, Any]) -> None:
    """Write ``model`` (a fitted regressor) and ``extras`` (``calibration``, ``data``) to
    ``path``, atomically."""
    scaler = model.target_scaler
    features = model.feature_scaler
    own = {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "target_scaling": {
            "mean": scaler.mean.item(),
            "std": scaler.std.item(),
            "baseline": (
                (int(scaler.baseline_column), scaler.slope.item()) if scaler.has_baseline else None
            ),
        },
        "feature_scaling": (
            None if features is None else {"mean": features.mean.cpu(), "std": features.std.cpu()}
        ),
        **model.checkpoint_extras(),
        **extras,
    }
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pl.__version__,
        "regal_torch": own,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path: Path) -> tuple[pl.LightningModule, dict[str, Any]]:
    """The model saved at ``path``, in eval mode, and its ``regal_torch`` extras.

    Raises:
        RegalError: no such file, or not a regal_torch model file.
    """
    path = Path(path)
    if not path.is_file():
        raise RegalError(f"{path}: no saved model (a run writes it when its last round ends)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        own = checkpoint["regal_torch"]
        module, _, name = own["model_class"].rpartition(".")
        model_class = getattr(importlib.import_module(module), name)
    except Exception as exc:  # anything unreadable is not a model file of ours
        raise RegalError(f"{path}: not a regal_torch model file ({type(exc).__name__})") from exc
    target = own["target_scaling"]
    features = own["feature_scaling"]
    model = model_class(
        **checkpoint["hyper_parameters"],
        target_scaling=TargetScaler(target["mean"], target["std"], target["baseline"]),
        feature_scaling=None if features is None else FeatureScaler(**features),
    )
    model.load_state_dict(checkpoint["state_dict"])
    model.restore_extras(own)
    return model.eval(), own
