"""The one object that crosses from models to strategies, and the one way to get it.

Prediction protocol (every model follows it; the loop and users call :func:`predict`): a
model's ``predict_step`` returns one :class:`Prediction` per batch. :func:`predict` runs
``trainer.predict`` with a :class:`RowWriter` callback, which copies each batch's rows into
CPU buffers, one per field, preallocated at the first batch for the whole loader, at the
rows' positions in the loader's dataset. No list of per-batch predictions is kept and nothing
is concatenated, so scoring a pool holds its fields once, and GPU memory does not grow with
the pool. Under DDP (``trainer.world_size > 1``, ``strategy=ddp``) each process predicts its
shard and the shards are gathered in dataset order onto every process (:func:`gather_rows`).
A model with a joint posterior over the whole predicted set (the GPs) defines
``complete_prediction(prediction) -> Prediction``, which :func:`predict` calls last to attach
the covariance provider over all rows.

A model that can save work when less is asked of it has a ``prediction_request`` attribute
(a :class:`PredictionRequest`); :func:`predict` sets it for the call, so a strategy that uses
only the mean and the embedding costs one deterministic pass, and gradient features are
computed only when asked for. Models without it give what they always give. Whatever the
model gives, :func:`predict` keeps only the fields the request asks for, except for a model
with ``complete_prediction``, which builds its covariance from the rows it gave (all kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field, fields
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.utilities.data import _update_dataloader
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from regal_torch.errors import RegalError

FIELDS = ("mean", "var", "samples", "embedding", "covariance", "gradients")
ROWS = ("mean", "var", "samples", "embedding", "gradients")  # the fields with a row per molecule
FEATURES = ("embedding", "gradients")  # the fields ``half_features`` stores as float16
# Rows per message when DDP processes exchange their shards (bounds the transient memory).
_GATHER_ROWS = 16384


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


class RowWriter(BasePredictionWriter):
    """Copies the rows of each predicted batch into one CPU buffer per field, at the rows'
    positions in the loader's dataset (Lightning's ``batch_indices``).

    A buffer is allocated at the first batch for all N rows, in its field's dtype (float16
    for the features with ``half_features``), so a prediction over N molecules is held once.
    :attr:`written` marks the rows this process has predicted.

    Args:
        rows: Rows of the loader's dataset (N).
        keep: The fields to keep; None: every field the model gives.
        half_features: Keep ``embedding`` and ``gradients`` as float16.

    Shapes:
        buffers: ``[N]``, ``[N, D]``, samples ``[S, N]``; written: ``[N]`` bool.
    """

    def __init__(
        self, rows: int, keep: frozenset[str] | None = None, half_features: bool = False
    ) -> None:
        super().__init__(write_interval="batch")
        self.keep, self.half_features = keep, half_features
        self.buffers: dict[str, Tensor] = {}
        self.written = torch.zeros(rows, dtype=torch.bool)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Prediction,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        index = torch.as_tensor(batch_indices or [], dtype=torch.long)
        if len(index) != len(prediction):
            raise RuntimeError(
                f"predict needs the dataset position of every predicted row; Lightning gave "
                f"{len(index)} for a batch of {len(prediction)} (a map-style dataset has them)"
            )
        for name in ROWS:
            value = getattr(prediction, name)
            if value is None or (self.keep is not None and name not in self.keep):
                continue
            dim = _row_dim(name)
            if name not in self.buffers:
                shape = list(value.shape)
                shape[dim] = len(self.written)
                dtype = torch.float16 if self.half_features and name in FEATURES else value.dtype
                self.buffers[name] = torch.empty(shape, dtype=dtype)
            buffer = self.buffers[name]
            buffer.index_copy_(dim, index, value.detach().to("cpu", buffer.dtype))
        self.written[index] = True

    def prediction(self) -> Prediction:
        """The prediction over every row of the dataset.

        Raises:
            RuntimeError: when rows are missing (no process wrote them).
        """
        missing = int((~self.written).sum())
        if missing:
            raise RuntimeError(f"{missing} of {len(self.written)} rows were not predicted")
        if not self.buffers:  # an empty dataset
            return Prediction(mean=torch.empty(0))
        return Prediction(**self.buffers)


def gather_rows(strategy: Strategy, buffers: dict[str, Tensor], written: Tensor) -> None:
    """Complete each DDP process's ``buffers`` in place with the rows the others predicted.

    Processes exchange the rows they wrote (with their dataset positions) in messages of
    :data:`_GATHER_ROWS` rows, through ``strategy.all_gather`` on the strategy's device, and
    apply them in rank order, so every process ends with the same rows; a row predicted by
    several processes (a sampler that pads the last shard repeats rows) gets the value of
    the highest rank.

    Shapes:
        buffers: as :class:`RowWriter`'s, ``[N]`` rows; written: ``[N]`` bool (updated).
    """
    device = strategy.root_device
    # a process that predicted no batch learns the fields from rank 0, which always has one
    spec = strategy.broadcast({name: (b.shape, b.dtype) for name, b in buffers.items()})
    for name, (shape, dtype) in spec.items():
        buffers.setdefault(name, torch.empty(shape, dtype=dtype))
    mine = written.nonzero().squeeze(1)
    counts = strategy.all_gather(torch.tensor(len(mine), device=device)).cpu()
    most = int(counts.max())
    for start in range(0, most, _GATHER_ROWS):
        size = min(_GATHER_ROWS, most - start)
        own = mine[start : start + size]
        own = torch.cat([own, own.new_zeros(size - len(own))])  # same length everywhere
        index = strategy.all_gather(own.to(device)).cpu()  # [W, size]
        valid = (counts - start).clamp(0, size).tolist()  # rows sent by each process
        for name, buffer in buffers.items():
            dim = _row_dim(name)
            parts = strategy.all_gather(buffer.index_select(dim, own).to(device)).cpu()
            for rank, n in enumerate(valid):
                buffer.index_copy_(dim, index[rank, :n], parts[rank].narrow(dim, 0, n))
        for rank, n in enumerate(valid):
            written[index[rank, :n]] = True


class BatchShards(DistributedSampler):
    """One DDP process's share of a loader's batches: the ``batch_size``-row batches of the
    dataset, in order, split into ``num_replicas`` contiguous runs (the first processes get
    one batch more where they do not divide evenly; rank 0 always gets one).

    Every process thus predicts exactly the batches one process would, the same rows
    together, so a deterministic pass gives bit-for-bit the one-process rows (Lightning's
    own prediction sampler deals rows out in turn, which changes every batch). Lightning
    keeps a loader's own ``DistributedSampler``.

    A process left without a batch (fewer batches than processes) predicts the dataset's
    last row as padding, since Lightning refuses an empty loader; ``padding`` is then True
    and :func:`predict` sends nothing of it to the others.
    """

    def __init__(self, dataset: Sized, batch_size: int, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        batches = math.ceil(len(dataset) / batch_size)
        first, last = (-(-r * batches // num_replicas) * batch_size for r in (rank, rank + 1))
        self.positions = range(first, min(last, len(dataset)))
        self.padding = not self.positions and len(dataset) > 0
        if self.padding:
            self.positions = range(len(dataset) - 1, len(dataset))

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)


def _row_dim(name: str) -> int:
    """The dimension of field ``name`` that runs over molecules."""
    return 1 if name == "samples" else 0


def predict(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    loader: DataLoader,
    request: PredictionRequest | None = None,
) -> Prediction:
    """The model's prediction over every molecule of ``loader``, in the order of its dataset.

    Streamed by a :class:`RowWriter` (see the module docstring); under DDP each process
    predicts its :class:`BatchShards` (unless the loader has its own ``DistributedSampler``)
    and :func:`gather_rows` completes every process's rows; then the model's
    ``complete_prediction``, if it has one.
    ``request`` (None: the model's default, every field kept) is handed to a model that has
    ``prediction_request``.

    Raises:
        RegalError: a Trainer of several processes that are not this one's (``ddp_spawn``).
    """
    complete = getattr(model, "complete_prediction", None)
    keep = None  # the model's default, or rows a model builds its covariance from
    if request is not None and complete is None:
        keep = frozenset(name for name in ROWS if request.wants(name))
    half = request is not None and request.half_features
    writer = RowWriter(len(loader.dataset), keep, half)
    distributed = trainer.world_size > 1
    padding = False
    if distributed and loader.batch_size and not isinstance(loader.sampler, DistributedSampler):
        shards = BatchShards(
            loader.dataset, loader.batch_size, trainer.world_size, trainer.global_rank
        )
        padding = shards.padding
        # Lightning's own way to give a loader of any class another sampler
        loader = _update_dataloader(loader, shards)
    requested = request is not None and hasattr(model, "prediction_request")
    previous = getattr(model, "prediction_request", None)
    if requested:
        model.prediction_request = request
    trainer.callbacks.append(writer)
    try:
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    finally:
        trainer.callbacks.remove(writer)
        if requested:
            model.prediction_request = previous
    if distributed:
        if not torch.distributed.is_initialized():
            raise RegalError(
                f"trainer.strategy={type(trainer.strategy).__name__} runs prediction in processes "
                "that do not send it back; use trainer.strategy=ddp"
            )
        if padding:  # a row of another process's, predicted only to have a batch
            writer.written[:] = False
        gather_rows(trainer.strategy, writer.buffers, writer.written)
    prediction = writer.prediction()
    return prediction if complete is None else complete(prediction)
