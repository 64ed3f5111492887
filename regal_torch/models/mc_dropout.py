"""GNN regressor whose uncertainty comes from MC-dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn.resolver import aggregation_resolver

from regal_torch.models.gine import GINEEncoder
from regal_torch.models.gradient_features import (
    GradientLayer,
    GradientSketch,
    gradient_features,
)
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.models.target_scaling import TargetScaling

_MIN_VAR = 1e-12


class MCDropoutRegressor(TargetScaling):
    r"""GINE encoder -> graph pooling -> MLP head, with MC-dropout uncertainty.

    .. math::
        \mathrm{embedding}(G) = \mathrm{ReLU}(W_1 \, \mathrm{pool}(\{h_v\}_{v \in G}))
        \qquad \hat y(G) = \mu_y + \sigma_y \, w_2^\top \mathrm{drop}(\mathrm{embedding}(G))

    The model trains on targets standardised with ``(mu_y, sigma_y)`` (buffers, set from the
    datamodule's labeled set at fit start, or by :meth:`set_target_scaling`), and returns
    everything in original target units. :meth:`predict_step` runs ``mc_samples`` dropout
    passes at once by replicating the batch, so T samples cost one pass of the data loader;
    when :attr:`prediction_request` asks for no uncertainty it makes one deterministic pass
    instead, and it adds gradient features (of the standardised output with respect to every
    linear layer, :meth:`gradient_layers`) when asked for them.

    Args:
        node_dim: Number of atom features.
        edge_dim: Number of bond features.
        hidden_dim: Width of encoder and head (default 128).
        num_layers: Message passing layers (default 3).
        dropout: Dropout probability in encoder and head (default 0.1).
        pooling: PyG aggregation for the readout: ``"mean"``, ``"sum"`` or ``"max"``
            (default ``"mean"``).
        lr: AdamW learning rate (default 1e-3), annealed with a cosine schedule over
            ``trainer.max_epochs``.
        weight_decay: AdamW weight decay (default 0).
        mc_samples: Dropout samples per molecule at prediction (default 20).

    Shapes:
        batch: a PyG ``Batch`` of B graphs (``x``, ``edge_index``, ``edge_attr``, ``batch``,
        ``y`` of shape ``[B]`` when labeled); ``forward`` -> ``[B]``;
        ``embedding`` -> ``[B, hidden_dim]``.
    """

    prediction_request = PredictionRequest()

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
    ) -> None:
        super().__init__()
        if mc_samples < 2:
            raise ValueError(
                f"model.mc_samples must be at least 2 for a variance; got {mc_samples}"
            )
        self.save_hyperparameters()
        self.encoder = GINEEncoder(node_dim, edge_dim, hidden_dim, num_layers, dropout)
        self.pool = aggregation_resolver(pooling)
        self.head_hidden = nn.Linear(hidden_dim, hidden_dim)
        self.head_out = nn.Linear(hidden_dim, 1)

    def embedding(self, batch: Batch) -> Tensor:
        """Input of the last linear layer, ``[B, hidden_dim]`` (dropout only in training)."""
        return self._embed(
            batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs
        )

    def _embed(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        index: Tensor,
        num_graphs: int,
        mc: bool = False,
    ) -> Tensor:
        h = self.encoder(x, edge_index, edge_attr, mc=mc)
        return F.relu(self.head_hidden(self.pool(h, index, dim_size=num_graphs)))

    def _head(self, embedding: Tensor, mc: bool = False) -> Tensor:
        embedding = F.dropout(embedding, self.hparams.dropout, training=self.training or mc)
        return self.head_out(embedding).squeeze(-1)

    def _standardized(self, batch: Batch) -> Tensor:
        return self._head(self.embedding(batch))

    def forward(self, batch: Batch) -> Tensor:
        """Prediction in original target units, ``[B]`` (dropout only in training mode)."""
        return self._standardized(batch) * self.target_std + self.target_mean

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        target = (batch.y.view(-1) - self.target_mean) / self.target_std
        loss = F.mse_loss(self._standardized(batch), target)
        self.log("train/loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        mae = (self(batch) - batch.y.view(-1)).abs().mean()
        self.log("val/mae", mae, batch_size=batch.num_graphs, prog_bar=True)

    def gradient_layers(self) -> list[GradientLayer]:
        """Every linear layer, with the level of its input rows (atom, bond or molecule)."""
        return [
            *self.encoder.gradient_layers(),
            GradientLayer(self.head_hidden, "graph"),
            GradientLayer(self.head_out, "graph"),
        ]

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
            samples = self._head(emb, mc=True).view(t, num_graphs)
            samples = samples * self.target_std + self.target_mean
            parts.update(
                mean=samples.mean(0), var=samples.var(0).clamp_min(_MIN_VAR), samples=samples
            )
        else:
            parts["mean"] = self._head(embedding) * self.target_std + self.target_mean
        if request.wants("embedding"):
            parts["embedding"] = embedding
        if request.wants("gradients"):
            sketch = GradientSketch(request.sketch_dim, request.sketch_seed)
            parts["gradients"] = gradient_features(
                self._standardized, self.gradient_layers(), batch, sketch
            )
        return Prediction(**parts)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


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
