"""MLP encoder of a table's rows: what the graph regressors use in place of GINE on tables."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from regal_torch.models.gradient_features import GradientLayer
from regal_torch.models.grouped_gine import linear


class MLPEncoder(nn.Module):
    r"""``num_layers`` fully connected layers with ReLU and dropout.

    .. math::
        h^{(0)} = x, \qquad h^{(l+1)} = \mathrm{drop}\big(\mathrm{ReLU}(W_l h^{(l)} + b_l)\big)

    A table's row is a graph of one node and no bonds, so this is the GINE encoder's place
    in the regressors (:func:`regal_torch.models.readout.encoder_readout`) with nothing to
    pass messages over and nothing to pool. Dropout is active in training, and also at
    inference when ``mc=True`` (MC-dropout). With ``members=M`` every layer is M independent
    layers run together (:class:`regal_torch.models.grouped_gine.GroupedLinear`), as in the
    ensemble's grouped GINE encoder.

    Args:
        in_dim: Number of features of a row.
        hidden_dim: Width of every layer.
        num_layers: Number of layers (at least 1).
        dropout: Dropout probability after each layer.
        members: None for one network, M for M independent networks.

    Shapes:
        x: ``[B, in_dim]`` -> ``[B, hidden_dim]`` (``[M, B, hidden_dim]`` with members).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, num_layers: int, dropout: float, members: int | None
    ) -> None:
        super().__init__()
        self.dropout = dropout
        widths = [in_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(
            linear(a, b, members) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def gradient_layers(self) -> list[GradientLayer]:
        """Every layer; their input rows are the table's rows (level ``graph``)."""
        return [GradientLayer(layer, "graph") for layer in self.layers]

    def forward(self, x: Tensor, mc: bool = False) -> Tensor:
        h = x
        for layer in self.layers:
            h = F.dropout(F.relu(layer(h)), self.dropout, training=self.training or mc)
        return h
