"""GINE message passing encoder for molecular graphs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GINEConv

from regal_torch.models.gradient_features import GradientLayer


class GINEEncoder(nn.Module):
    r"""Stack of GINE convolutions with residual connections and batch norm.

    GINE (Hu et al., "Strategies for Pre-training Graph Neural Networks", ICLR 2020,
    https://arxiv.org/abs/1905.12265) adds bond features to the GIN update:

    .. math::
        h_v^{(0)} = W_0 x_v, \qquad
        h_v^{(l+1)} = h_v^{(l)} + \mathrm{drop}\Big(\mathrm{ReLU}\big(\mathrm{BN}\big(
            \mathrm{MLP}\big((1+\epsilon) h_v^{(l)} + \textstyle\sum_{u \in N(v)}
            \mathrm{ReLU}(h_u^{(l)} + W_e e_{uv})\big)\big)\big)\Big)

    Dropout is active in training, and also at inference when ``mc=True`` (MC-dropout).

    Args:
        node_dim: Number of atom features.
        edge_dim: Number of bond features.
        hidden_dim: Width of every layer.
        num_layers: Number of message passing layers.
        dropout: Dropout probability after each layer.

    Shapes:
        x: ``[V, node_dim]``; edge_index: ``[2, E]``; edge_attr: ``[E, edge_dim]``;
        output: ``[V, hidden_dim]``.
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.node_in = nn.Linear(node_dim, hidden_dim)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            mlp = nn.Sequential(
                nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)
            )
            self.convs.append(GINEConv(mlp, train_eps=True, edge_dim=edge_dim))
            self.norms.append(nn.BatchNorm1d(hidden_dim))

    def reset_parameters(self) -> None:
        self.node_in.reset_parameters()
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.reset_parameters()
            norm.reset_parameters()

    def gradient_layers(self) -> list[GradientLayer]:
        """Every linear layer with the level of its input rows: the atom embedding, and per
        convolution the bond projection and the two layers of its MLP."""
        layers = [GradientLayer(self.node_in, "node")]
        for conv in self.convs:
            layers.append(GradientLayer(conv.lin, "edge"))
            layers += [GradientLayer(m, "node") for m in conv.nn if isinstance(m, nn.Linear)]
        return layers

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, mc: bool = False) -> Tensor:
        h = self.node_in(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            update = F.relu(norm(conv(h, edge_index, edge_attr)))
            h = h + F.dropout(update, self.dropout, training=self.training or mc)
        return h
