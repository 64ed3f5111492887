"""GNN regressor whose uncertainty comes from MC-dropout."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.gnn_regressor import GNNRegressor
from regal_torch.models.prediction import Prediction
from regal_torch.models.regressor import sample_statistics
from regal_torch.models.target_scaling import TargetScaler


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

    Args:
        node_dim: Number of atom features.
        edge_dim: Number of bond features.
        hidden_dim: Width of encoder and head (default 128).
        num_layers: Message passing layers (default 3).
        dropout: Dropout probability in encoder and head (default 0.1).
        pooling: Readout: ``"mean"``, ``"sum"`` or ``"max"`` (default ``"mean"``).
        lr: AdamW learning rate (default 1e-3), annealed with a cosine schedule over
            ``trainer.max_epochs``.
        weight_decay: AdamW weight decay (default 0).
        mc_samples: Dropout samples per molecule at prediction (default 20).
        target_scaling: The target's scaling; None (default): the datamodule's at fit start.

    Shapes:
        batch: a PyG ``Batch`` of B graphs (``x``, ``edge_index``, ``edge_attr``, ``batch``,
        ``y`` of shape ``[B]`` when labeled); ``forward`` -> ``[B]``;
        ``embedding`` -> ``[B, hidden_dim]``; prediction samples ``[mc_samples, B]``,
        gradients ``[B, sketch_dim]``.
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 3,
        dropout: float = 0.1,
        pooling: str = "mean",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        mc_samples: int = 20,
        target_scaling: TargetScaler | None = None,
    ) -> None:
        if mc_samples < 2:
            raise ValueError(
                f"model.mc_samples must be at least 2 for a variance; got {mc_samples}"
            )
        super().__init__(target_scaling)
        self.save_hyperparameters(ignore=["target_scaling"])
        self.build_network()

    def embedding(self, batch: Batch) -> Tensor:
        """Input of the last linear layer, ``[B, hidden_dim]`` (dropout only in training)."""
        return self._embed_batch(batch)

    def _standardized(self, batch: Batch) -> Tensor:
        return self._head(self.embedding(batch))

    def forward(self, batch: Batch) -> Tensor:
        """Prediction in original target units, ``[B]`` (dropout only in training mode)."""
        return self.target_scaler(self._standardized(batch))

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Prediction for one batch in original target units: MC-dropout samples, or one
        deterministic pass, and the fields :attr:`prediction_request` asks for."""
        request = self.prediction_request
        embedding = self.embedding(batch)
        parts: dict[str, Tensor] = {}
        if request.uncertainty:
            t, num_graphs = self.hparams.mc_samples, batch.num_graphs
            emb = self._embed(*_replicate(batch, t), t * num_graphs, mc=True)
            samples = self.target_scaler(self._head(emb, mc=True).view(t, num_graphs))
            parts.update(sample_statistics(samples))
        else:
            parts["mean"] = self.target_scaler(self._head(embedding))
        if request.wants("embedding"):
            parts["embedding"] = embedding
        if request.wants("gradients"):
            parts["gradients"] = self._gradients(self._standardized, batch)
        return Prediction(**parts)


def _replicate(batch: Batch, t: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``t`` stacked copies of a batch of B graphs: ``(x, edge_index, edge_attr, index)``.

    Copy ``s`` of graph ``g`` is graph ``s * B + g``, so per-graph outputs reshape to
    ``[t, B]``.

    Shapes:
        x: ``[t V, F]``; edge_index: ``[2, t E]``; edge_attr: ``[t E, F_e]``; index: ``[t V]``.
    """
    copies = torch.arange(t, device=batch.x.device)
    edge_shift = copies.repeat_interleave(batch.edge_index.shape[1]) * batch.num_nodes
    graph_shift = copies.repeat_interleave(batch.num_nodes) * batch.num_graphs
    return (
        batch.x.repeat(t, 1),
        batch.edge_index.repeat(1, t) + edge_shift,
        batch.edge_attr.repeat(t, 1),
        batch.batch.repeat(t) + graph_shift,
    )
