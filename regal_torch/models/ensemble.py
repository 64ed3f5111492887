"""Deep ensemble of M GINE regressors, trained together in one module."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.gnn_regressor import GNNRegressor
from regal_torch.models.prediction import Prediction
from regal_torch.models.regressor import sample_statistics
from regal_torch.option_rules import integer, with_note


class EnsembleRegressor(GNNRegressor):
    r"""M independently initialised GINE regressors; their spread is the uncertainty.

    Member :math:`m` is the MC-dropout model's architecture with its own weights:

    .. math::
        \mathrm{embedding}_m(G) = \mathrm{ReLU}(W_{1,m}\,\mathrm{pool}(\{h_{m,v}\}))
        \qquad \hat y_m(G) = \mu_y + \sigma_y\, w_{2,m}^\top \mathrm{embedding}_m(G)

    and the prediction is :math:`\bar y = \frac1M\sum_m \hat y_m`,
    :math:`\mathrm{var} = \frac{1}{M-1}\sum_m(\hat y_m-\bar y)^2`. All members live in one
    :class:`regal_torch.models.grouped_gine.GroupedGINEEncoder`, so one ``Trainer.fit``
    trains all of them at once on the same batches (they differ by initialisation, as in
    Lakshminarayanan et al. 2017); the loss is the mean of the members' MSEs, whose
    gradients are independent per member. Trains on standardised targets (see
    :class:`regal_torch.models.regressor.Regressor`).

    On a table (``edge_dim=None``) every member's encoder is an MLP on the standardised rows
    (:class:`GNNRegressor`).

    Args:
        node_dim: Number of atom features (a table: of feature columns).
        edge_dim: Number of bond features; None for a table.
        members: Ensemble size M (default 5, at least 2).
        network: :class:`GNNRegressor`'s further arguments, positional (``hidden_dim``, ...).
        options: :class:`GNNRegressor`'s arguments by name (``dropout``, in training only,
            default 0.0).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``members_forward`` -> ``[M, B]``;
        ``forward`` -> ``[B]``; ``embedding`` -> ``[B, M * hidden_dim]`` (the members'
        embeddings side by side: the mean is linear in it); prediction samples ``[M, B]``;
        gradients ``[B, sketch_dim]`` (of the standardised ensemble mean with respect to
        every member's linear layers), when :attr:`prediction_request` asks for them.
    """

    option_rules = {"members": with_note(integer(2), " (a variance needs two members)")}

    def __init__(
        self, node_dim: int, edge_dim: int | None, members: int = 5, *network: Any, **options: Any
    ) -> None:
        if members < 2:
            raise ValueError(f"model.members must be at least 2 for a variance; got {members}")
        super().__init__(node_dim, edge_dim, *network, members=members, **options)

    def embedding(self, batch: Batch) -> Tensor:
        """The members' embeddings side by side, ``[B, M * hidden_dim]``."""
        return _side_by_side(self._embed_batch(batch))

    def _members_standardized(self, embedding: Tensor) -> Tensor:
        """Every member's standardised output from their embeddings ``[M, B, hidden_dim]``."""
        return self._head(embedding)

    def members_forward(self, batch: Batch) -> Tensor:
        """Every member's prediction in original units, ``[M, B]``."""
        return self.to_target(self._members_standardized(self._embed_batch(batch)), batch)

    def forward(self, batch: Batch) -> Tensor:
        """Ensemble mean in original units, ``[B]``."""
        return self.members_forward(batch).mean(0)

    def _standardized_mean(self, batch: Batch) -> Tensor:
        return self._members_standardized(self._embed_batch(batch)).mean(0)

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Members' predictions for one batch as samples, in original target units (one pass
        either way), with gradient features if :attr:`prediction_request` asks for them."""
        embedding = self._embed_batch(batch)
        samples = self.to_target(self._members_standardized(embedding), batch)
        gradients = None
        if self.prediction_request.wants("gradients"):
            gradients = self._gradients(self._standardized_mean, batch)
        return Prediction(
            **sample_statistics(samples), embedding=_side_by_side(embedding), gradients=gradients
        )


def _side_by_side(embedding: Tensor) -> Tensor:
    """``[M, B, H]`` -> ``[B, M * H]`` (member m's features in columns ``m H`` to ``(m+1) H``)."""
    return embedding.transpose(0, 1).reshape(embedding.shape[1], -1)
