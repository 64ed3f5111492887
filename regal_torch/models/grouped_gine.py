"""M independent GINE encoders evaluated at once with grouped (stacked) weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from regal_torch.models.gradient_features import GradientLayer


class GroupedLinear(nn.Module):
    """``members`` independent linear layers, applied in one batched matrix product.

    Each member's weight and bias are initialised like ``nn.Linear``'s, independently.

    Args:
        members: Number of independent layers M.
        in_dim: Input width.
        out_dim: Output width.

    Shapes:
        input: ``[N, in_dim]`` (shared by all members) or ``[M, N, in_dim]``;
        output: ``[M, N, out_dim]``.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


def linear(in_dim: int, out_dim: int, members: int | None = None) -> nn.Module:
    """``nn.Linear``, or ``members`` independent ones as one :class:`GroupedLinear`.

    Shapes:
        ``[N, in_dim]`` -> ``[N, out_dim]``; grouped: ``[N, in_dim]`` or
        ``[M, N, in_dim]`` -> ``[M, N, out_dim]``.
    """
    return (
        nn.Linear(in_dim, out_dim) if members is None else GroupedLinear(members, in_dim, out_dim)
    )


class GroupedGINEEncoder(nn.Module):
    r"""M independent copies of :class:`regal_torch.models.gine.GINEEncoder`, run together.

    Same update as GINEEncoder, member by member (each with its own weights, ``eps`` and
    batch norm statistics):

    .. math::
        h_v^{(l+1)} = h_v^{(l)} + \mathrm{drop}\Big(\mathrm{ReLU}\big(\mathrm{BN}\big(
            \mathrm{MLP}\big((1+\epsilon) h_v^{(l)} + \textstyle\sum_{u \in N(v)}
            \mathrm{ReLU}(h_u^{(l)} + W_e e_{uv})\big)\big)\big)\Big)

    Linear layers are :class:`GroupedLinear` (one ``baddbmm`` for all members), messages are
    gathered and summed over the member dimension at once, and the M batch norms are one
    ``BatchNorm1d`` over ``M * hidden_dim`` channels. So one forward pass trains or
    evaluates the whole ensemble.

    Args:
        members: Number of encoders M.
        node_dim: Number of atom features.
        edge_dim: Number of bond features.
        hidden_dim: Width of every layer.
        num_layers: Message passing layers.
        dropout: Dropout probability after each layer, in training.

    Shapes:
        x: ``[V, node_dim]``; edge_index: ``[2, E]``; edge_attr: ``[E, edge_dim]``;
        output: ``[M, V, hidden_dim]``.
    """

    def __init__(
        self,
        members: int,
        node_dim: int,
        edge_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.members, self.hidden_dim, self.dropout = members, hidden_dim, dropout
        self.node_in = GroupedLinear(members, node_dim, hidden_dim)
        self.edge_lins = nn.ModuleList()
        self.mlps = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            self.edge_lins.append(GroupedLinear(members, edge_dim, hidden_dim))
            self.mlps.append(
                nn.ModuleList(
                    [
                        GroupedLinear(members, hidden_dim, hidden_dim),
                        GroupedLinear(members, hidden_dim, hidden_dim),
                    ]
                )
            )
            self.norms.append(nn.BatchNorm1d(members * hidden_dim))
        self.eps = nn.Parameter(torch.zeros(num_layers, members, 1, 1))

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        nn.init.zeros_(self.eps)

    def gradient_layers(self) -> list[GradientLayer]:
        """Every linear layer with the level of its input rows (see GINEEncoder's)."""
        layers = [GradientLayer(self.node_in, "node")]
        for edge_lin, mlp in zip(self.edge_lins, self.mlps, strict=True):
            layers.append(GradientLayer(edge_lin, "edge"))
            layers += [GradientLayer(m, "node") for m in mlp]
        return layers

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        src, dst = edge_index
        h = self.node_in(x)
        m, v, width = self.members, x.shape[0], self.hidden_dim
        for layer, (edge_lin, mlp, norm) in enumerate(
            zip(self.edge_lins, self.mlps, self.norms, strict=True)
        ):
            messages = F.relu(h[:, src] + edge_lin(edge_attr))
            aggregated = scatter(messages, dst, dim=1, dim_size=v, reduce="sum")
            out = mlp[1](F.relu(mlp[0]((1 + self.eps[layer]) * h + aggregated)))
            out = norm(out.transpose(0, 1).reshape(v, m * width)).view(v, m, width)
            update = F.relu(out.transpose(0, 1))
            h = h + F.dropout(update, self.dropout, training=self.training)
        return h
