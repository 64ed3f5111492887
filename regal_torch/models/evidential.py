"""GNN regressor with deep evidential regression (a Normal-Inverse-Gamma output)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.grouped_gine import linear
from regal_torch.models.one_pass import OnePassRegressor
from regal_torch.option_rules import number

EVIDENCE_EPS = 1e-6
"""Added to the softplus outputs: nu, beta > 0 and alpha > 1 strictly."""


class EvidentialRegressor(OnePassRegressor):
    r"""GINE encoder -> pooling -> ReLU layer, then the four parameters of a
    Normal-Inverse-Gamma prior over the mean and variance of the target (Amini et al. 2020,
    "Deep Evidential Regression"): :math:`\gamma` from the usual output layer, and
    :math:`\nu, \alpha, \beta` from a second linear layer through softplus
    (:math:`\nu, \beta > 0`, :math:`\alpha > 1`).

    Trained on standardised targets :math:`t` with the NIG marginal likelihood (a Student t)
    plus the evidence regulariser,

    .. math::
        \mathcal L = \tfrac12\log\tfrac{\pi}{\nu} - \alpha\log\Omega
            + (\alpha + \tfrac12)\log\big(\nu (t - \gamma)^2 + \Omega\big)
            + \log\frac{\Gamma(\alpha)}{\Gamma(\alpha + \frac12)}
            + \lambda\,|t - \gamma|\,(2\nu + \alpha),
        \qquad \Omega = 2\beta(1 + \nu),

    and predicts mean :math:`\mu_y + \sigma_y\gamma` and the Student t's variance
    :math:`\sigma_y^2\,\beta (1 + \nu) / (\nu(\alpha - 1))` (aleatoric
    :math:`\beta/(\alpha-1)` plus epistemic :math:`\beta/(\nu(\alpha-1))`) in one pass.

    Args:
        network: :class:`GNNRegressor`'s arguments, positional (``node_dim``, ``edge_dim``,
            ``hidden_dim``, ...).
        regularizer: :math:`\lambda`, the weight of the evidence regulariser, a finite number
            >= 0 (default 0.01).
        options: :class:`GNNRegressor`'s arguments by name (``dropout``, training only,
            default 0.0).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``forward`` -> ``[B]``; :meth:`evidence` ->
        three ``[B]``; ``embedding`` -> ``[B, hidden_dim]``; gradients ``[B, sketch_dim]``
        (of the standardised mean), when asked for.
    """

    # inf and nan are refused for every option (regal_torch.loop.checks)
    option_rules = {"regularizer": number(0, low_open=False)}

    def __init__(self, *network: Any, regularizer: float = 0.01, **options: Any) -> None:
        if not (math.isfinite(regularizer) and regularizer >= 0):  # nan, inf: LCMD fails later
            raise ValueError(f"model.regularizer must be a finite number >= 0; got {regularizer}")
        super().__init__(*network, **options)
        self.head_evidence = linear(self.hparams.hidden_dim, 3)

    def evidence(self, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(nu, alpha, beta)`` of embeddings ``[B, hidden_dim]``, each ``[B]``."""
        nu, alpha, beta = (F.softplus(self.head_evidence(embedding)) + EVIDENCE_EPS).unbind(-1)
        return nu, alpha + 1, beta

    def standardised_variance(self, embedding: Tensor) -> Tensor:
        """The Student t's variance ``beta (1 + nu) / (nu (alpha - 1))``, ``[B]``."""
        nu, alpha, beta = self.evidence(embedding)
        return beta * (1 + nu) / (nu * (alpha - 1))

    def loss(self, batch: Batch, target: Tensor) -> Tensor:
        embedding = self.embedding(batch)
        gamma = self._head(embedding)
        nu, alpha, beta = self.evidence(embedding)
        omega = 2 * beta * (1 + nu)
        error = target - gamma
        nll = (
            0.5 * torch.log(math.pi / nu)
            - alpha * torch.log(omega)
            + (alpha + 0.5) * torch.log(nu * error**2 + omega)
            + torch.lgamma(alpha)
            - torch.lgamma(alpha + 0.5)
        )
        return (nll + self.hparams.regularizer * error.abs() * (2 * nu + alpha)).mean()
