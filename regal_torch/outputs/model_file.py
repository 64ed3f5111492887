"""A run's final model as a file: written at the end of every run, loaded to predict new molecules.

``model.ckpt`` in the run folder is a Lightning-style checkpoint (``state_dict``,
``hyper_parameters``, ``pytorch-lightning_version``) with, under ``regal_torch``, what else
rebuilds the model and its intervals:

- ``model_class``: the regressor's import path; ``target_scaling`` (mean, std and a Delta
  target's baseline) and ``feature_scaling`` (the item features' standardisation, whose
  means also fill a molecule's failed features);
- ``posterior`` (the GPs): the training inputs and standardised targets they condition on;
- ``calibration``: the validation-fitted variance factor ``var_scale``, the conformal
  quantile ``conformal_q`` and its ``interval`` coverage
  (:mod:`regal_torch.uncertainty.conformal`), and
  the local calibration's state (``loop.local_neighbours``; None without it);
- ``data``: the :class:`~regal_torch.outputs.data_card.DataCard`, so that a new file is read
  the way the run read its data (:mod:`regal_torch.predict`).

The file is written atomically. It is a pickle (as Lightning's checkpoints are): load only
run folders you trust.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, atomic_write_bytes
from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.target_scaling import TargetScaler
from regal_torch.outputs.data_card import DataCard

__all__ = ["MODEL_FILE", "Calibration", "load_model", "save_model"]

MODEL_FILE = "model.ckpt"


@dataclass(frozen=True)
class Calibration:
    """How a run's std and intervals are made from its model's prediction.

    Attributes:
        var_scale: The variance factor fitted on the validation molecules.
        conformal_q: The split-conformal quantile of ``|y - mean| / std``.
        interval: The intervals' coverage (``predict.interval``).
        local: The local calibration's state (``loop.local_neighbours``), or None.
    """

    var_scale: float
    conformal_q: float
    interval: float
    local: dict[str, Any] | None

    @classmethod
    def of_round(cls, metrics: dict[str, float], local: Any) -> Calibration:
        """A round's calibration: from its metrics (``var_scale``, ``conformal_q``,
        ``interval``) and its local calibration (a
        :class:`~regal_torch.uncertainty.local_calibration.NeighbourCalibration`, or None)."""
        return cls(
            var_scale=metrics["var_scale"],
            conformal_q=metrics["conformal_q"],
            interval=metrics["interval"],
            local=None if local is None else local.state(),
        )

    @classmethod
    def from_dict(cls, saved: Any, where: Path) -> Calibration:
        """The calibration saved in the model file ``where``.

        Raises:
            RegalError: an entry is missing.
        """
        names = ("var_scale", "conformal_q", "interval", "local")
        if not isinstance(saved, dict) or any(name not in saved for name in names):
            missing = next(n for n in names if not isinstance(saved, dict) or n not in saved)
            raise RegalError(f"{where}: the model file has no calibration entry {missing!r}")
        return cls(**{name: saved[name] for name in names})

    def to_dict(self) -> dict[str, Any]:
        return {
            "var_scale": self.var_scale,
            "conformal_q": self.conformal_q,
            "interval": self.interval,
            "local": self.local,
        }


def save_model(
    path: Path, model: pl.LightningModule, calibration: Calibration, card: DataCard
) -> None:
    """Write ``model`` (a fitted regressor), its ``calibration`` and the run's data ``card``
    to ``path``, atomically."""
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
        "calibration": calibration.to_dict(),
        "data": card.to_dict(),
    }
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pl.__version__,
        "regal_torch": own,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue(), RUN_HINT)


def load_model(path: Path) -> tuple[pl.LightningModule, dict[str, Any]]:
    """The model saved at ``path``, in eval mode, and its ``regal_torch`` extras (with
    ``calibration`` a :class:`Calibration` and ``data`` a :class:`DataCard`).

    Raises:
        RegalError: no such file, not a regal_torch model file, or a damaged one (a missing
            weight, calibration or data card entry).
    """
    path = Path(path)
    if not path.is_file():
        raise RegalError(f"{path}: no saved model (a run writes it when its last round ends)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        own = checkpoint["regal_torch"]
        module, _, name = own["model_class"].rpartition(".")
        model_class = getattr(importlib.import_module(module), name)
        target = own["target_scaling"]
        features = own["feature_scaling"]
        hyper_parameters, state_dict = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    except Exception as exc:  # anything unreadable is not a model file of ours
        raise RegalError(f"{path}: not a regal_torch model file ({type(exc).__name__})") from exc
    extras = {
        **own,
        "calibration": Calibration.from_dict(own.get("calibration"), path),
        "data": DataCard.from_dict(own.get("data"), path),
    }
    model = model_class(
        **hyper_parameters,
        target_scaling=TargetScaler(target["mean"], target["std"], target["baseline"]),
        feature_scaling=None if features is None else FeatureScaler(**features),
    )
    problems = model.load_state_dict(state_dict, strict=False)
    absent = problems.missing_keys or problems.unexpected_keys
    if absent:
        what = "no weight" if problems.missing_keys else "an unknown weight"
        raise RegalError(f"{path}: the model file is damaged: {what} {absent[0]!r}")
    model.restore_extras(own)
    return model.eval(), extras
