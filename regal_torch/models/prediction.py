"""The one object that crosses from models to strategies: a :class:`Prediction`, and the
:class:`PredictionRequest` that says which of its fields a caller will use.

A model that can save work when less is asked of it has a ``prediction_request`` attribute
(a :class:`PredictionRequest`); :func:`regal_torch.models.predict_rows.predict` (the one way
to get a prediction: streamed, and gathered across DDP processes) sets it for the call, so a
strategy that uses only the mean and the embedding costs one deterministic pass, and gradient
features are computed only when asked for. This module imports no Lightning: strategies
depend on it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

FIELDS = ("mean", "var", "samples", "embedding", "covariance", "gradients")
ROWS = ("mean", "var", "samples", "embedding", "gradients")  # the fields with a row per molecule
FEATURES = ("embedding", "gradients")  # the fields ``half_features`` stores as float16


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
        half_features: Keep ``embedding`` and ``gradients`` as float16 (half their memory:
            256 MB instead of 512 MB for 10^6 molecules x 128 features); the model computes
            them as always, only the stored copy is rounded. For strategies that allow it
            (their ``half_features`` option), which compute in float32 on blocks of rows.
    """

    fields: frozenset[str] = field(
        default_factory=lambda: frozenset(("mean", "var", "samples", "embedding"))
    )
    sketch_dim: int | None = 512
    sketch_seed: int = 0
    half_features: bool = False

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


class _SelectedCovariance:
    """A covariance provider seen through a row selection ``index`` (``[M]``)."""

    def __init__(self, covariance: Callable[[Tensor, Tensor], Tensor], index: Tensor) -> None:
        self.covariance, self.index = covariance, index

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self.covariance(self.index[rows], self.index[cols])
