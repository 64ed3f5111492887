"""GNN regressor with a second output head for the variance (heteroscedastic Gaussian NLL)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.grouped_gine import linear
from regal_torch.models.one_pass import OnePassRegressor
from regal_torch.option_rules import number

LOG_VAR_BOUND = 10.0
"""The standardised log-variance is clamped to [-10, 10] (a variance of 4.5e-5 to 2.2e4 times
the labeled set's): a single molecule cannot drive the loss to minus infinity."""


class MeanVarianceRegressor(OnePassRegressor):
    r"""GINE encoder -> pooling -> ReLU layer, then two linear outputs: the mean and the
    log-variance of a Gaussian (Nix & Weigend 1994), trained with the beta-NLL of Seitzer et
    al. 2022.

    .. math::
        f(G) = w_2^\top \mathrm{drop}(\mathrm{emb}(G)), \qquad
        s(G) = w_v^\top \mathrm{emb}(G) \;(\log\text{-variance}),

        \mathrm{loss} = \frac1B \sum_i \lfloor e^{\beta s_i} \rfloor
            \tfrac12\big(s_i + (t_i - f_i)^2 e^{-s_i}\big)

    on standardised targets :math:`t` (see :class:`regal_torch.models.regressor.Regressor`);
    :math:`\lfloor\cdot\rfloor` stops the gradient. ``beta=0`` is the plain Gaussian NLL,
    which lets the mean of hard molecules fit poorly because their large variance divides
    their error; ``beta=1`` gives the mean the gradient of the MSE. The variance is
    aleatoric (the noise the model expects at that molecule), one deterministic pass.
    Prediction: mean :math:`\mu_y + \sigma_y f` (with a Delta baseline, plus its line),
    var :math:`\sigma_y^2 e^{s}`.

    Args:
        network: :class:`GNNRegressor`'s arguments, positional (``node_dim``, ``edge_dim``,
            ``hidden_dim``, ...).
        beta: The exponent of the NLL's weight, in [0, 1] (default 0.5).
        options: :class:`GNNRegressor`'s arguments by name (``dropout``, training only,
            default 0.0).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``forward`` -> ``[B]``;
        :meth:`log_variance` -> ``[B]``; ``embedding`` -> ``[B, hidden_dim]``; gradients
        ``[B, sketch_dim]`` (of the standardised mean), when asked for.
    """

    option_rules = {"beta": number(0, low_open=False, high=1, high_open=False)}

    def __init__(self, *network: Any, beta: float = 0.5, **options: Any) -> None:
        if not 0 <= beta <= 1:
            raise ValueError(f"model.beta must be in [0, 1]; got {beta}")
        super().__init__(*network, **options)
        self.head_log_var = linear(self.hparams.hidden_dim, 1)

    def log_variance(self, embedding: Tensor) -> Tensor:
        """Standardised log-variance from the embedding ``[B, hidden_dim]`` -> ``[B]``."""
        return self.head_log_var(embedding).squeeze(-1).clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)

    def standardised_variance(self, embedding: Tensor) -> Tensor:
        """``exp(s)``, ``[B, hidden_dim]`` -> ``[B]``."""
        return self.log_variance(embedding).exp()

    def loss(self, batch: Batch, target: Tensor) -> Tensor:
        embedding = self.embedding(batch)
        mean, log_var = self._head(embedding), self.log_variance(embedding)
        nll = 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var))
        weight = torch.exp(self.hparams.beta * log_var).detach()
        return (weight * nll).mean()
