"""GNN regressor whose uncertainty comes from MC-dropout."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.gnn_regressor import GNNRegressor
from regal_torch.models.prediction import Prediction
from regal_torch.models.regressor import sample_statistics
from regal_torch.option_rules import integer, with_note


class MCDropoutRegressor(GNNRegressor):
    r"""GINE encoder -> graph pooling -> MLP head, with MC-dropout uncertainty.

    .. math::
        \mathrm{embedding}(G) = \mathrm{ReLU}(W_1 \, \mathrm{pool}(\{h_v\}_{v \in G}))
        \qquad \hat y(G) = \mu_y + \sigma_y \, w_2^\top \mathrm{drop}(\mathrm{embedding}(G))

    The model trains on targets standardised with ``(mu_y, sigma_y)`` (its
    ``target_scaler``: handed in, or the datamodule's labeled set at fit start, or
    :meth:`set_target_scaling`; see :class:`regal_torch.models.regressor.Regressor`), and
    returns everything in original target units. :meth:`predict_step` runs ``mc_samples``
    dropout passes at once by replicating the batch, so T samples cost one pass of the data
    loader; when :attr:`prediction_request` asks for no uncertainty it makes one
    deterministic pass instead, and it adds gradient features (of the standardised output
    with respect to every linear layer, :meth:`gradient_layers`) when asked for them.

    On a table (``edge_dim=None``) the GINE encoder and the pooling are an MLP on the
    standardised rows (:class:`GNNRegressor`).

    Args:
        network: :class:`GNNRegressor`'s arguments, positional (``node_dim``, ``edge_dim``,
            ``hidden_dim``, ...).
        dropout: Dropout probability in encoder and head (default 0.1).
        mc_samples: Dropout samples per molecule at prediction (default 20).
        options: :class:`GNNRegressor`'s arguments by name.

    Shapes:
        batch: a PyG ``Batch`` of B graphs (``x``, ``edge_index``, ``edge_attr``, ``batch``,
        ``y`` of shape ``[B]`` when labeled); ``forward`` -> ``[B]``;
        ``embedding`` -> ``[B, hidden_dim]``; prediction samples ``[mc_samples, B]``,
        gradients ``[B, sketch_dim]``.
    """

    option_rules = {"mc_samples": with_note(integer(2), " (a variance needs two dropout samples)")}

    def __init__(
        self, *network: Any, dropout: float = 0.1, mc_samples: int = 20, **options: Any
    ) -> None:
        if mc_samples < 2:
            raise ValueError(
                f"model.mc_samples must be at least 2 for a variance; got {mc_samples}"
            )
        super().__init__(*network, dropout=dropout, **options)

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Prediction for one batch in original target units: MC-dropout samples, or one
        deterministic pass, and the fields :attr:`prediction_request` asks for."""
        request = self.prediction_request
        embedding = self.embedding(batch)
        parts: dict[str, Tensor] = {}
        if request.uncertainty:
            t, num_graphs = self.hparams.mc_samples, batch.num_graphs
            copies = _replicate(batch, t)
            features = self.molecule_features(batch)
            if features is not None:
                features = features.repeat(t, 1)
            emb = self._embed(*copies, t * num_graphs, features, mc=True)
            samples = self.to_target(self._head(emb, mc=True).view(t, num_graphs), batch)
            parts.update(sample_statistics(samples))
        else:
            parts["mean"] = self.to_target(self._head(embedding), batch)
        if request.wants("embedding"):
            parts["embedding"] = embedding
        if request.wants("gradients"):
            parts["gradients"] = self._gradients(self._standardized, batch)
        return Prediction(**parts)


def _replicate(batch: Batch, t: int) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
    """``t`` stacked copies of a batch of B graphs: ``(x, edge_index, edge_attr, index)``
    (a table's rows: edge_index and edge_attr None).

    Copy ``s`` of graph ``g`` is graph ``s * B + g``, so per-graph outputs reshape to
    ``[t, B]``.

    Shapes:
        x: ``[t V, F]``; edge_index: ``[2, t E]``; edge_attr: ``[t E, F_e]``; index: ``[t V]``.
    """
    copies = torch.arange(t, device=batch.x.device)
    if batch.edge_index is None:  # a table: rows only
        return batch.x.repeat(t, 1), None, None, batch.batch.repeat(t)
    edge_shift = copies.repeat_interleave(batch.edge_index.shape[1]) * batch.num_nodes
    graph_shift = copies.repeat_interleave(batch.num_nodes) * batch.num_graphs
    return (
        batch.x.repeat(t, 1),
        batch.edge_index.repeat(1, t) + edge_shift,
        batch.edge_attr.repeat(t, 1),
        batch.batch.repeat(t) + graph_shift,
    )
