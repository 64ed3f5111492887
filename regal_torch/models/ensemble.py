"""Deep ensemble of M GINE regressors, trained together in one module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from regal_torch.models.gradient_features import (
    GradientLayer,
    GradientSketch,
    gradient_features,
)
from regal_torch.models.grouped_gine import GroupedGINEEncoder, GroupedLinear
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.models.target_scaling import TargetScaling

_MIN_VAR = 1e-12


class EnsembleRegressor(TargetScaling):
    r"""M independently initialised GINE regressors; their spread is the uncertainty.

    Member :math:`m` is the MC-dropout model's architecture with its own weights:

    .. math::
        \mathrm{embedding}_m(G) = \mathrm{ReLU}(W_{1,m}\,\mathrm{pool}(\{h_{m,v}\}))
        \qquad \hat y_m(G) = \mu_y + \sigma_y\, w_{2,m}^\top \mathrm{embedding}_m(G)

    and the prediction is :math:`\bar y = \frac1M\sum_m \hat y_m`,
    :math:`\mathrm{var} = \frac{1}{M-1}\sum_m(\hat y_m-\bar y)^2`. All members live in one
    :class:`GroupedGINEEncoder`, so one ``Trainer.fit`` trains all of them at once on the
    same batches (they differ by initialisation, as in Lakshminarayanan et al. 2017); the
    loss is the mean of the members' MSEs, whose gradients are independent per member.
    Trains on standardised targets (see :class:`TargetScaling`).

    Args:
        node_dim: Number of atom features.
        edge_dim: Number of bond features.
        members: Ensemble size M (default 5, at least 2).
        hidden_dim: Width of encoder and head (default 128).
        num_layers: Message passing layers (default 3).
        dropout: Dropout probability in training only (default 0.0).
        pooling: Readout, ``"mean"``, ``"sum"`` or ``"max"`` (default ``"mean"``).
        lr: AdamW learning rate (default 1e-3), cosine-annealed over ``trainer.max_epochs``.
        weight_decay: AdamW weight decay (default 0).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``members_forward`` -> ``[M, B]``;
        ``forward`` -> ``[B]``; prediction samples ``[M, B]``; embedding ``[B, M * hidden_dim]``
        (the members' embeddings side by side: the mean is linear in it); gradients
        ``[B, sketch_dim]`` (of the standardised ensemble mean with respect to every member's
        linear layers), when :attr:`prediction_request` asks for them.
    """

    prediction_request = PredictionRequest()

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        members: int = 5,
        hidden_dim: int = 128,
        num_layers: int = 3,
        dropout: float = 0.0,
        pooling: str = "mean",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"model.members must be at least 2 for a variance; got {members}")
        if pooling not in ("mean", "sum", "max"):
            raise ValueError(f"model.pooling must be mean, sum or max; got {pooling!r}")
        self.save_hyperparameters()
        self.encoder = GroupedGINEEncoder(
            members, node_dim, edge_dim, hidden_dim, num_layers, dropout
        )
        self.head_hidden = GroupedLinear(members, hidden_dim, hidden_dim)
        self.head_out = GroupedLinear(members, hidden_dim, 1)

    def _embed(self, batch: Batch) -> Tensor:
        """Per-member embeddings, ``[M, B, hidden_dim]``."""
        h = self.encoder(batch.x, batch.edge_index, batch.edge_attr)
        pooled = scatter(
            h, batch.batch, dim=1, dim_size=batch.num_graphs, reduce=self.hparams.pooling
        )
        return F.relu(self.head_hidden(pooled))

    def _standardized(self, embedding: Tensor) -> Tensor:
        embedding = F.dropout(embedding, self.hparams.dropout, training=self.training)
        return self.head_out(embedding).squeeze(-1)

    def members_forward(self, batch: Batch) -> Tensor:
        """Every member's prediction in original units, ``[M, B]``."""
        return self._standardized(self._embed(batch)) * self.target_std + self.target_mean

    def forward(self, batch: Batch) -> Tensor:
        """Ensemble mean in original units, ``[B]``."""
        return self.members_forward(batch).mean(0)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        target = (batch.y.view(1, -1) - self.target_mean) / self.target_std
        out = self._standardized(self._embed(batch))
        loss = F.mse_loss(out, target.expand_as(out))
        self.log("train/loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        mae = (self(batch) - batch.y.view(-1)).abs().mean()
        self.log("val/mae", mae, batch_size=batch.num_graphs, prog_bar=True)

    def gradient_layers(self) -> list[GradientLayer]:
        """Every member's linear layers, with the level of their input rows."""
        return [
            *self.encoder.gradient_layers(),
            GradientLayer(self.head_hidden, "graph"),
            GradientLayer(self.head_out, "graph"),
        ]

    def _standardized_mean(self, batch: Batch) -> Tensor:
        return self._standardized(self._embed(batch)).mean(0)

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Members' predictions for one batch as samples, in original target units (one pass
        either way), with gradient features if :attr:`prediction_request` asks for them."""
        embedding = self._embed(batch)
        samples = self._standardized(embedding) * self.target_std + self.target_mean
        gradients = None
        if self.prediction_request.wants("gradients"):
            request = self.prediction_request
            gradients = gradient_features(
                self._standardized_mean,
                self.gradient_layers(),
                batch,
                GradientSketch(request.sketch_dim, request.sketch_seed),
            )
        return Prediction(
            mean=samples.mean(0),
            var=samples.var(0).clamp_min(_MIN_VAR),
            samples=samples,
            embedding=embedding.transpose(0, 1).reshape(batch.num_graphs, -1),
            gradients=gradients,
        )

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
