"""Encoder -> pooling -> linear readout of the graph regressors, built in one place."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.resolver import aggregation_resolver

from regal_torch.models.gine import GINEEncoder
from regal_torch.models.grouped_gine import GroupedGINEEncoder, GroupedLinear

POOLINGS = ("mean", "sum", "max")


def linear(in_dim: int, out_dim: int, members: int | None = None) -> nn.Module:
    """``nn.Linear``, or ``members`` independent ones as one :class:`GroupedLinear`.

    Shapes:
        ``[N, in_dim]`` -> ``[N, out_dim]``; grouped: ``[N, in_dim]`` or
        ``[M, N, in_dim]`` -> ``[M, N, out_dim]``.
    """
    return (
        nn.Linear(in_dim, out_dim) if members is None else GroupedLinear(members, in_dim, out_dim)
    )


def gine_readout(
    options: Any, out_dim: int, members: int | None = None
) -> tuple[nn.Module, Aggregation, nn.Module]:
    """A GINE encoder, a graph pooling and the linear layer after it, created in this order
    (which decides their seeded initial weights).

    The molecule embedding of the graph regressors is
    ``act(readout(pool(encoder(x, edge_index, edge_attr), batch)))``, with ``act`` ReLU
    (:class:`regal_torch.models.gnn_regressor.GNNRegressor`) or ``tanh``
    (:class:`regal_torch.models.dkl.DeepKernelGP`).

    Args:
        options: The model's ``hparams``: ``node_dim``, ``edge_dim`` (atom and bond
            features), ``hidden_dim`` (encoder width), ``num_layers`` (message passing
            layers), ``dropout`` (encoder dropout) and ``pooling`` (``"mean"``, ``"sum"`` or
            ``"max"``), read as attributes.
        out_dim: Width of the readout layer's output.
        members: None for one network; M for M independent networks run together
            (:class:`GroupedGINEEncoder`, :class:`GroupedLinear`).

    Returns:
        ``(encoder, pool, readout)``.

    Shapes:
        encoder: ``[V, node_dim]``, ``[2, E]``, ``[E, edge_dim]`` -> ``[V, hidden_dim]``
        (``[M, V, hidden_dim]`` with members); pool: that and the graph of each atom
        ``[V]`` -> ``[B, hidden_dim]`` (``[M, B, hidden_dim]``); readout: -> ``[B, out_dim]``
        (``[M, B, out_dim]``).
    """
    if options.pooling not in POOLINGS:
        raise ValueError(f"model.pooling must be mean, sum or max; got {options.pooling!r}")
    layers = (options.node_dim, options.edge_dim, options.hidden_dim, options.num_layers)
    if members is None:
        encoder = GINEEncoder(*layers, options.dropout)
    else:
        encoder = GroupedGINEEncoder(members, *layers, options.dropout)
    pool = aggregation_resolver(options.pooling)
    return encoder, pool, linear(options.hidden_dim, out_dim, members)
