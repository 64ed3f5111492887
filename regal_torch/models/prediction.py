"""The one object that crosses from models to strategies, and the one way to get it.

Prediction protocol (every model follows it; the loop and users call :func:`predict`):
``trainer.predict(model, dataloaders=loader)`` returns one :class:`Prediction` per batch,
:meth:`Prediction.cat` joins them, and a model with a joint posterior over the whole
predicted set (the GPs) defines ``complete_prediction(prediction) -> Prediction``, which
:func:`predict` calls last to attach the covariance provider over the joined rows.

A model that can save work when less is asked of it has a ``prediction_request`` attribute
(a :class:`PredictionRequest`); :func:`predict` sets it for the call, so a strategy that uses
only the mean and the embedding costs one deterministic pass, and gradient features are
computed only when asked for. Models without it give what they always give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

FIELDS = ("mean", "var", "samples", "embedding", "covariance", "gradients")


@dataclass(frozen=True)
class PredictionRequest:
    """Which :class:`Prediction` fields the caller will use, so that a model computes no more.

    Attributes:
        fields: Names from :data:`FIELDS`; the mean is always given. Without ``var``,
            ``samples`` or ``covariance``, a stochastic model makes one deterministic pass
            (MC-dropout: dropout off, so the mean is the network's output, not a sample mean).
        sketch_dim: Dimension of the gradient sketch (``None``: exact gradients, for small
            networks only); see :mod:`regal_torch.models.gradient_features`.
        sketch_seed: Seed of the sketch's projections: pool and labeled set predicted with
            the same seed share one kernel.
    """

    fields: frozenset[str] = field(
        default_factory=lambda: frozenset(("mean", "var", "samples", "embedding"))
    )
    sketch_dim: int | None = 512
    sketch_seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown Prediction fields {sorted(unknown)}; known: {FIELDS}")

    def wants(self, name: str) -> bool:
        """Whether field ``name`` is asked for (the mean always is)."""
        return name == "mean" or name in self.fields

    @property
    def uncertainty(self) -> bool:
        """Whether anything beyond one deterministic pass is asked for."""
        return bool({"var", "samples", "covariance"} & self.fields)


@dataclass
class Prediction:
    """A model's predictive distribution over N molecules, in original target units.

    Strategies see only this (plus the selection context), never a model.

    Attributes:
        mean: Predictive mean.
        var: Predictive variance, strictly positive; None where the caller asked for no
            uncertainty (:class:`PredictionRequest`).
        samples: Stochastic predictions (dropout passes or ensemble members), if the model
            has them.
        embedding: Molecule features the model's output is linear in (the input of its last
            linear layer), if the model has them.
        gradients: Per-molecule gradient of the output with respect to the weights of
            every linear layer, sketched (:mod:`regal_torch.models.gradient_features`), if
            asked for and the model has them.
        covariance: ``covariance(rows, cols)``, the posterior covariance between rows
            ``rows`` and ``cols`` of this prediction, computed on demand block by block
            (never an N x N matrix), if the model has a joint posterior (a GP).

    Shapes:
        mean: ``[N]``; var: ``[N]``; samples: ``[S, N]``; embedding: ``[N, D]``;
        gradients: ``[N, G]`` (``G = sketch_dim``);
        covariance: rows ``[R]``, cols ``[C]`` -> ``[R, C]``.
    """

    mean: Tensor
    var: Tensor | None = None
    samples: Tensor | None = None
    embedding: Tensor | None = None
    covariance: Callable[[Tensor, Tensor], Tensor] | None = None
    gradients: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.mean.shape[0]
        if self.mean.dim() != 1 or (self.var is not None and self.var.shape != self.mean.shape):
            shapes = (tuple(self.mean.shape), None if self.var is None else tuple(self.var.shape))
            raise ValueError(f"Prediction needs mean and var of shape [N]; got {shapes}")
        if self.samples is not None and (self.samples.dim() != 2 or self.samples.shape[1] != n):
            raise ValueError(f"samples must be [S, {n}]; got {tuple(self.samples.shape)}")
        if self.embedding is not None and (
            self.embedding.dim() != 2 or self.embedding.shape[0] != n
        ):
            raise ValueError(f"embedding must be [{n}, D]; got {tuple(self.embedding.shape)}")
        if self.gradients is not None and (
            self.gradients.dim() != 2 or self.gradients.shape[0] != n
        ):
            raise ValueError(f"gradients must be [{n}, G]; got {tuple(self.gradients.shape)}")

    def __len__(self) -> int:
        return self.mean.shape[0]

    @property
    def std(self) -> Tensor | None:
        """Predictive standard deviation, ``[N]`` (None without a variance)."""
        return None if self.var is None else self.var.sqrt()

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
        joined = {}
        for name in ("mean", "var", "samples", "embedding", "gradients"):
            if getattr(first, name) is not None:
                dim = 1 if name == "samples" else 0
                joined[name] = torch.cat([getattr(p, name) for p in parts], dim=dim)
        return Prediction(**joined)


class _SelectedCovariance:
    """A covariance provider seen through a row selection ``index`` (``[M]``)."""

    def __init__(self, covariance: Callable[[Tensor, Tensor], Tensor], index: Tensor) -> None:
        self.covariance, self.index = covariance, index

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self.covariance(self.index[rows], self.index[cols])


def predict(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    loader: DataLoader,
    request: PredictionRequest | None = None,
) -> Prediction:
    """The model's prediction over every molecule of ``loader``, in loader order.

    Per-batch predictions from ``trainer.predict``, concatenated, then completed by the
    model's ``complete_prediction`` if it has one (see the module docstring). ``request``
    (None: the model's default) is handed to a model that has ``prediction_request``.
    """
    if request is not None and hasattr(model, "prediction_request"):
        previous = model.prediction_request
        model.prediction_request = request
        try:
            parts = trainer.predict(model, dataloaders=loader)
        finally:
            model.prediction_request = previous
    else:
        parts = trainer.predict(model, dataloaders=loader)
    prediction = Prediction.cat(parts)
    complete = getattr(model, "complete_prediction", None)
    return prediction if complete is None else complete(prediction)
