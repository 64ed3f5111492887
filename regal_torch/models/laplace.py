"""GNN regressor with a last-layer Laplace posterior (its output layer's weights)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from regal_torch.models.capabilities import Capabilities
from regal_torch.models.one_pass import OnePassRegressor
from regal_torch.option_rules import integer

EVIDENCE_FLOOR = 1e-8
"""Lower bound of the prior and noise precisions during the evidence updates."""


class LaplaceRegressor(OnePassRegressor):
    r"""GINE encoder -> pooling -> ReLU layer -> linear output trained with the MSE, then a
    Laplace approximation of the posterior of the output layer (Daxberger et al. 2021,
    "Laplace Redux"; the linear-Gaussian case is exact).

    With :math:`\phi(G) = [\mathrm{emb}(G), 1]` (``hidden_dim + 1``) and the N labeled
    molecules' :math:`\Phi` (``[N, hidden_dim + 1]``), the posterior precision of
    :math:`w = [w_2, b_2]` around the trained weights :math:`w_*` is

    .. math::
        H = \beta \Phi^\top \Phi + \alpha I, \qquad
        \mathrm{var}(G) = \sigma_y^2 \big(\phi(G)^\top H^{-1} \phi(G) + \beta^{-1}\big)

    on standardised targets; the prior precision :math:`\alpha` and the noise precision
    :math:`\beta` maximise the evidence of the linear model (MacKay's fixed point, with
    :math:`\gamma = \sum_i \beta\lambda_i / (\alpha + \beta\lambda_i)` over the eigenvalues
    :math:`\lambda_i` of :math:`\Phi^\top\Phi`: :math:`\alpha = \gamma / \|w_*\|^2`,
    :math:`\beta = (N - \gamma) / \|t - \Phi w_*\|^2`). :math:`H^{-1}` and :math:`\beta^{-1}`
    are computed once at the end of every fit (:meth:`on_train_end`, one deterministic pass
    over the labeled molecules) and kept as buffers, so a saved model predicts with them.
    The mean is the trained network's; the variance costs one pass, like the mean.

    Args:
        network: :class:`GNNRegressor`'s arguments, positional (``node_dim``, ``edge_dim``,
            ``hidden_dim``, ...).
        evidence_steps: MacKay updates of :math:`\alpha, \beta` (default 50).
        options: :class:`GNNRegressor`'s arguments by name (``dropout``, training only,
            default 0.0).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``forward`` -> ``[B]``; ``embedding`` ->
        ``[B, hidden_dim]``; buffers ``posterior_cov`` ``[hidden_dim + 1, hidden_dim + 1]``,
        ``noise_var`` ``[]``; gradients ``[B, sketch_dim]``, when asked for.
    """

    option_rules = {"evidence_steps": integer(1)}
    capabilities = Capabilities(
        frozenset(("mean", "var", "embedding", "gradients")),
        predicts_untrained=True,
        multi_process=False,  # the posterior is fitted on one process's labeled molecules
    )

    def __init__(self, *network: Any, evidence_steps: int = 50, **options: Any) -> None:
        super().__init__(*network, **options)
        width = self.hparams.hidden_dim + 1
        # before any fit: the prior N(0, I) and unit noise
        self.register_buffer("posterior_cov", torch.eye(width))
        self.register_buffer("noise_var", torch.tensor(1.0))

    def on_train_end(self) -> None:
        """Fit the output layer's posterior on the molecules this fit trained on."""
        loader = self.trainer.train_dataloader
        ordered = DataLoader(
            loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn
        )
        was_training = self.training
        self.eval()
        features, targets = [], []
        with torch.no_grad():
            for batch in ordered:
                batch = batch.to(self.device)
                features.append(self.embedding(batch))
                targets.append(
                    self.target_scaler.standardise(batch.y.view(-1), self.baseline_features(batch))
                )
        self.train(was_training)
        self.fit_posterior(torch.cat(features), torch.cat(targets))

    @torch.no_grad()
    def fit_posterior(self, embedding: Tensor, target: Tensor) -> None:
        """Set ``posterior_cov`` and ``noise_var`` from the labeled molecules' embeddings
        ``[N, hidden_dim]`` and standardised targets ``[N]`` (float64 inside)."""
        phi = _with_bias(embedding).double()
        weights = torch.cat([self.head_out.weight.view(-1), self.head_out.bias.view(-1)]).double()
        residual = target.double() - phi @ weights
        gram = phi.T @ phi
        eigenvalues = torch.linalg.eigvalsh(gram).clamp_min(0)
        n = len(target)
        weight_norm = max(float(weights @ weights), EVIDENCE_FLOOR)
        residual_norm = max(float(residual @ residual), EVIDENCE_FLOOR)
        alpha, beta = 1.0, 1.0
        for _ in range(self.hparams.evidence_steps):
            gamma = float((beta * eigenvalues / (alpha + beta * eigenvalues)).sum())
            alpha = max(gamma / weight_norm, EVIDENCE_FLOOR)
            beta = max((n - gamma) / residual_norm, EVIDENCE_FLOOR)
        precision = beta * gram + alpha * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        self.posterior_cov.copy_(torch.cholesky_inverse(torch.linalg.cholesky(precision)))
        self.noise_var.fill_(1.0 / beta)

    def standardised_variance(self, embedding: Tensor) -> Tensor:
        """:math:`\\phi^\\top H^{-1} \\phi + \\beta^{-1}` of embeddings ``[B, hidden_dim]``
        -> ``[B]``."""
        phi = _with_bias(embedding)
        return ((phi @ self.posterior_cov) * phi).sum(-1) + self.noise_var


def _with_bias(embedding: Tensor) -> Tensor:
    """``[B, H]`` -> ``[B, H + 1]``: a column of ones for the output layer's bias."""
    return torch.cat([embedding, embedding.new_ones(len(embedding), 1)], dim=1)
