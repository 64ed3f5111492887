"""Predictions streamed over a loader, and gathered across DDP processes.

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
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.utilities.data import _update_dataloader
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from regal_torch.errors import RegalError
from regal_torch.models.prediction import FEATURES, ROWS, Prediction, PredictionRequest

# Rows per message when DDP processes exchange their shards (bounds the transient memory).
_GATHER_ROWS = 16384


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
