"""The network of the MC-dropout and ensemble regressors: GINE -> pooling -> MLP head."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.gradient_features import (
    GradientLayer,
    cached_sketch,
    gradient_features,
)
from regal_torch.models.prediction import PredictionRequest
from regal_torch.models.readout import gine_readout, linear
from regal_torch.models.regressor import Regressor


class GNNRegressor(Regressor):
    r"""GINE encoder -> graph pooling -> ReLU layer -> dropout -> linear output.

    .. math::
        \mathrm{embedding}(G) = \mathrm{ReLU}(W_1 \, \mathrm{pool}(\{h_v\}_{v \in G}))
        \qquad f(G) = w_2^\top \mathrm{drop}(\mathrm{embedding}(G))

    on standardised targets (see :class:`Regressor`), trained with the mean squared error.
    With ``members=M`` the encoder and both head layers are M independent networks run
    together (:class:`regal_torch.models.grouped_gine.GroupedGINEEncoder`), each trained on
    the same batches; the loss is the mean of their MSEs. Modules: ``encoder``, ``pool``,
    ``head_hidden`` (:math:`W_1`), ``head_out`` (:math:`w_2`).

    A subclass saves its hyperparameters (``node_dim``, ``edge_dim``, ``hidden_dim``,
    ``num_layers``, ``dropout``, ``pooling``, ``lr``, ``weight_decay``), calls
    :meth:`build_network` and defines ``predict_step``; :attr:`prediction_request` says
    what the caller will use (:func:`regal_torch.models.prediction.predict` sets it).

    Shapes:
        :meth:`_embed`: ``[B, hidden_dim]`` (``[M, B, hidden_dim]`` with members);
        :meth:`_head`: ``[B]`` (``[M, B]``).
    """

    prediction_request = PredictionRequest()

    def build_network(self, members: int | None = None) -> None:
        """Create ``encoder``, ``pool``, ``head_hidden`` and ``head_out`` from ``hparams``
        (:func:`regal_torch.models.readout.gine_readout`), in this order; ``members``: None
        for one network, M for M networks run together."""
        self.encoder, self.pool, self.head_hidden = gine_readout(
            self.hparams, self.hparams.hidden_dim, members
        )
        self.head_out = linear(self.hparams.hidden_dim, 1, members)

    def _embed(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        index: Tensor,
        num_graphs: int,
        **options,
    ) -> Tensor:
        """Input of the last linear layer (``options`` go to the encoder)."""
        h = self.encoder(x, edge_index, edge_attr, **options)
        return F.relu(self.head_hidden(self.pool(h, index, dim_size=num_graphs)))

    def _embed_batch(self, batch: Batch) -> Tensor:
        return self._embed(
            batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs
        )

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
