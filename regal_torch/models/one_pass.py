"""The base of the GNN regressors whose variance is a function of the embedding, so that mean
and variance come from one deterministic pass (the mean-variance head, the last-layer
Laplace)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.capabilities import Capabilities
from regal_torch.models.gnn_regressor import GNNRegressor
from regal_torch.models.prediction import Prediction
from regal_torch.models.regressor import MIN_VAR


class OnePassRegressor(GNNRegressor):
    r"""One GINE network whose variance is :math:`\sigma_y^2 v(\mathrm{emb}(G))` for a
    subclass's :meth:`standardised_variance` ``v``; no sampling.

    Provides mean, var, embedding and gradient features (of the standardised mean); a
    subclass whose variance needs one process redeclares ``capabilities``.

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``forward`` -> ``[B]``; ``embedding`` ->
        ``[B, hidden_dim]``; :meth:`standardised_variance`: ``[B, hidden_dim]`` -> ``[B]``;
        gradients ``[B, sketch_dim]``, when :attr:`prediction_request` asks for them.
    """

    capabilities = Capabilities(
        frozenset(("mean", "var", "embedding", "gradients")),
        predicts_untrained=True,
        multi_process=True,
    )

    def standardised_variance(self, embedding: Tensor) -> Tensor:
        """Variance of the standardised output given the embedding ``[B, hidden_dim]`` ->
        ``[B]``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Mean and variance of one batch in original units (one pass), with the embedding
        and the gradient features when :attr:`prediction_request` asks for them."""
        request = self.prediction_request
        embedding = self.embedding(batch)
        parts: dict[str, Tensor] = {"mean": self.to_target(self._head(embedding), batch)}
        if request.uncertainty:
            var = self.target_scaler.scale_variance(self.standardised_variance(embedding))
            parts["var"] = var.clamp_min(MIN_VAR)
        if request.wants("embedding"):
            parts["embedding"] = embedding
        if request.wants("gradients"):
            parts["gradients"] = self._gradients(self._standardized, batch)
        return Prediction(**parts)
