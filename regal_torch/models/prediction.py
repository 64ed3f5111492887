"""The one object that crosses from models to strategies, and the one way to get it.

Prediction protocol (every model follows it; the loop and users call :func:`predict`):
``trainer.predict(model, dataloaders=loader)`` returns one :class:`Prediction` per batch,
:meth:`Prediction.cat` joins them, and a model with a joint posterior over the whole
predicted set (the GPs) defines ``complete_prediction(prediction) -> Prediction``, which
:func:`predict` calls last to attach the covariance provider over the joined rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader


@dataclass
class Prediction:
    """A model's predictive distribution over N molecules, in original target units.

    Strategies see only this (plus the selection context), never a model.

    Attributes:
        mean: Predictive mean.
        var: Predictive variance, strictly positive.
        samples: Stochastic predictions (dropout passes or ensemble members), if the model
            has them.
        embedding: Molecule features the model's output is linear in (the input of its last
            linear layer), if the model has them.
        covariance: ``covariance(rows, cols)``, the posterior covariance between rows
            ``rows`` and ``cols`` of this prediction, computed on demand block by block
            (never an N x N matrix), if the model has a joint posterior (a GP).

    Shapes:
        mean: ``[N]``; var: ``[N]``; samples: ``[S, N]``; embedding: ``[N, D]``;
        covariance: rows ``[R]``, cols ``[C]`` -> ``[R, C]``.
    """

    mean: Tensor
    var: Tensor
    samples: Tensor | None = None
    embedding: Tensor | None = None
    covariance: Callable[[Tensor, Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        n = self.mean.shape[0]
        if self.mean.dim() != 1 or self.var.shape != self.mean.shape:
            raise ValueError(
                f"Prediction needs mean and var of shape [N]; got {tuple(self.mean.shape)} "
                f"and {tuple(self.var.shape)}"
            )
        if self.samples is not None and (self.samples.dim() != 2 or self.samples.shape[1] != n):
            raise ValueError(f"samples must be [S, {n}]; got {tuple(self.samples.shape)}")
        if self.embedding is not None and (
            self.embedding.dim() != 2 or self.embedding.shape[0] != n
        ):
            raise ValueError(f"embedding must be [{n}, D]; got {tuple(self.embedding.shape)}")

    def __len__(self) -> int:
        return self.mean.shape[0]

    @property
    def std(self) -> Tensor:
        """Predictive standard deviation. Shape ``[N]``."""
        return self.var.sqrt()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def index_select(self, index: Tensor) -> Prediction:
        """The prediction restricted to the rows ``index`` (shape ``[M]``)."""
        parts = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                parts[f.name] = None
            elif f.name == "covariance":
                parts[f.name] = _SelectedCovariance(value, index)
            elif f.name == "samples":
                parts[f.name] = value[:, index]
            else:
                parts[f.name] = value[index]
        return Prediction(**parts)

    @staticmethod
    def cat(parts: list[Prediction]) -> Prediction:
        """Concatenate predictions over consecutive groups of molecules.

        A covariance provider does not survive: a model with a joint posterior attaches one
        over the whole concatenated set.
        """
        first = parts[0]
        return Prediction(
            mean=torch.cat([p.mean for p in parts]),
            var=torch.cat([p.var for p in parts]),
            samples=None if first.samples is None else torch.cat([p.samples for p in parts], dim=1),
            embedding=None if first.embedding is None else torch.cat([p.embedding for p in parts]),
        )


class _SelectedCovariance:
    """A covariance provider seen through a row selection ``index`` (``[M]``)."""

    def __init__(self, covariance: Callable[[Tensor, Tensor], Tensor], index: Tensor) -> None:
        self.covariance, self.index = covariance, index

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self.covariance(self.index[rows], self.index[cols])


def predict(trainer: pl.Trainer, model: pl.LightningModule, loader: DataLoader) -> Prediction:
    """The model's prediction over every molecule of ``loader``, in loader order.

    Per-batch predictions from ``trainer.predict``, concatenated, then completed by the
    model's ``complete_prediction`` if it has one (see the module docstring).
    """
    prediction = Prediction.cat(trainer.predict(model, dataloaders=loader))
    complete = getattr(model, "complete_prediction", None)
    return prediction if complete is None else complete(prediction)
