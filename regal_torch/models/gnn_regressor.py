"""The network of the MC-dropout and ensemble regressors: GINE -> pooling -> MLP head (on a
table: MLP -> MLP head)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.capabilities import Capabilities
from regal_torch.models.gradient_features import (
    GradientLayer,
    cached_sketch,
    gradient_features,
)
from regal_torch.models.grouped_gine import linear
from regal_torch.models.prediction import PredictionRequest
from regal_torch.models.readout import encoder_readout, pooled
from regal_torch.models.regressor import NetworkRegressor


class GNNRegressor(NetworkRegressor):
    r"""GINE encoder -> graph pooling -> ReLU layer -> dropout -> linear output.

    .. math::
        \mathrm{embedding}(G) = \mathrm{ReLU}(W_1 \, \mathrm{pool}(\{h_v\}_{v \in G}))
        \qquad f(G) = w_2^\top \mathrm{drop}(\mathrm{embedding}(G))

    on standardised targets (see :class:`Regressor`), trained with the mean squared error.
    With ``members=M`` the encoder and both head layers are M independent networks run
    together (:class:`regal_torch.models.grouped_gine.GroupedGINEEncoder`), each trained on
    the same batches; the loss is the mean of their MSEs. Modules: ``encoder``, ``pool``,
    ``head_hidden`` (:math:`W_1`), ``head_out`` (:math:`w_2`). On a table (``edge_dim=None``)
    the encoder is an MLP on the standardised rows and ``pool`` is None
    (:func:`regal_torch.models.readout.encoder_readout`).

    ``embedding``, ``forward`` and :meth:`_standardized` are those of one network (the
    ensemble overrides them). A subclass defines ``predict_step``; :attr:`prediction_request`
    says what the caller will use (:func:`regal_torch.models.predict_rows.predict` sets it).

    Args:
        network: :class:`regal_torch.models.regressor.NetworkRegressor`'s arguments,
            positional (``node_dim``, ``edge_dim``, ``hidden_dim``, ...).
        members: None for one network (default), M for M networks run together.
        options: :class:`regal_torch.models.regressor.NetworkRegressor`'s arguments by name.

    Shapes:
        :meth:`_embed`: ``[B, hidden_dim]`` (``[M, B, hidden_dim]`` with members);
        :meth:`_head`: ``[B]`` (``[M, B]``).
    """

    prediction_request = PredictionRequest()
    capabilities = Capabilities(
        frozenset(("mean", "var", "samples", "embedding", "gradients")),
        predicts_untrained=True,
        multi_process=True,
    )

    def __init__(self, *network: Any, members: int | None = None, **options: Any) -> None:
        super().__init__(*network, **options)
        # encoder, pool, head_hidden, head_out: in this order (their seeded initial weights)
        hidden_dim = self.hparams.hidden_dim
        self.encoder, self.pool, self.head_hidden = encoder_readout(
            self.hparams, hidden_dim, members
        )
        self.head_out = linear(hidden_dim, 1, members)

    def _embed(self, *graphs: Any, **options: Any) -> Tensor:
        """Input of the last linear layer of ``graphs``, the arguments of
        :func:`regal_torch.models.readout.pooled` (``x``, ``edge_index``, ``edge_attr``,
        ``index``, ``num_graphs``, ``features``; ``options`` go to the encoder)."""
        return F.relu(self.head_hidden(pooled(self, *graphs, **options)))

    def _embed_batch(self, batch: Batch) -> Tensor:
        return self._embed(
            batch.x,
            batch.edge_index,
            batch.edge_attr,
            batch.batch,
            batch.num_graphs,
            self.molecule_features(batch),
        )

    def embedding(self, batch: Batch) -> Tensor:
        """Input of the last linear layer, ``[B, hidden_dim]`` (dropout only in training)."""
        return self._embed_batch(batch)

    def _standardized(self, batch: Batch) -> Tensor:
        """Standardised output, ``[B]`` (``[M, B]`` with members)."""
        return self._head(self.embedding(batch))

    def forward(self, batch: Batch) -> Tensor:
        """Prediction in original target units, ``[B]`` (dropout only in training mode)."""
        return self.to_target(self._standardized(batch), batch)

    def _head(self, embedding: Tensor, mc: bool = False) -> Tensor:
        """Standardised output; dropout in training, and also in eval when ``mc``."""
        embedding = F.dropout(embedding, self.hparams.dropout, training=self.training or mc)
        return self.head_out(embedding).squeeze(-1)

    def loss(self, batch: Batch, target: Tensor) -> Tensor:
        out = self._head(self._embed_batch(batch))
        return F.mse_loss(out, target.expand_as(out))

    def gradient_layers(self) -> list[GradientLayer]:
        """Every linear layer, with the level of its input rows (atom, bond or molecule)."""
        return [
            *self.encoder.gradient_layers(),
            GradientLayer(self.head_hidden, "graph"),
            GradientLayer(self.head_out, "graph"),
        ]

    def _gradients(self, output: Callable[[Batch], Tensor], batch: Batch) -> Tensor:
        """Sketched gradient features of ``output`` (standardised, ``[B]``) with respect to
        :meth:`gradient_layers`, as :attr:`prediction_request` asks: ``[B, sketch_dim]``."""
        request = self.prediction_request
        sketch = cached_sketch(request.sketch_dim, request.sketch_seed)
        return gradient_features(output, self.gradient_layers(), batch, sketch)
