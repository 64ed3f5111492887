"""Encoder -> pooling -> linear readout of the network regressors, built in one place.

On molecules the encoder is GINE message passing and the pooling a graph readout, and the
standardised molecule features (``data.features``), if any, are concatenated to the pooled
embedding; with ``graph=False`` the encoder is an MLP on those features alone. On a table
(``edge_dim=None``: each row is a graph of one node and no bonds) the encoder is an MLP
(:class:`regal_torch.models.mlp.MLPEncoder`) on the rows and there is nothing to pool.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.resolver import aggregation_resolver

from regal_torch.errors import RegalError
from regal_torch.models.gine import GINEEncoder
from regal_torch.models.grouped_gine import GroupedGINEEncoder, linear
from regal_torch.models.mlp import MLPEncoder

POOLINGS = ("mean", "sum", "max")


def encoder_readout(
    options: Any, out_dim: int, members: int | None = None
) -> tuple[nn.Module, Aggregation | None, nn.Module]:
    """An encoder, a graph pooling (None on a table) and the linear layer after it, created
    in this order (which decides their seeded initial weights).

    The embedding of the network regressors is ``act(readout(pooled(...)))`` (see
    :func:`pooled`), with ``act`` ReLU (:class:`regal_torch.models.gnn_regressor.GNNRegressor`)
    or ``tanh`` (:class:`regal_torch.models.dkl.DeepKernelGP`).

    Args:
        options: The model's ``hparams``: ``node_dim`` (atom features, or a table's feature
            columns), ``edge_dim`` (bond features; None for a table: MLP encoder),
            ``hidden_dim`` (encoder width), ``num_layers`` (message passing or MLP layers),
            ``dropout`` (encoder dropout) and ``pooling`` (``"mean"``, ``"sum"`` or ``"max"``;
            unused on a table), read as attributes; ``feature_groups`` (the molecule features'
            groups and widths, None: no features) and ``graph`` (False: an MLP on the
            features alone), read with ``get``.
        out_dim: Width of the readout layer's output.
        members: None for one network; M for M independent networks run together
            (:class:`GroupedGINEEncoder`, grouped :class:`MLPEncoder`).

    Returns:
        ``(encoder, pool, readout)``.

    Shapes:
        encoder: ``[V, node_dim]``, ``[2, E]``, ``[E, edge_dim]`` -> ``[V, hidden_dim]``
        (``[M, V, hidden_dim]`` with members), or on a table ``[B, node_dim]`` ->
        ``[B, hidden_dim]``; pool: that and the graph of each atom ``[V]`` ->
        ``[B, hidden_dim]`` (``[M, B, hidden_dim]``); readout: -> ``[B, out_dim]``
        (``[M, B, out_dim]``).
    """
    if options.pooling not in POOLINGS:
        raise ValueError(f"model.pooling must be mean, sum or max; got {options.pooling!r}")
    readout = (options.hidden_dim, out_dim, members)
    feature_dim = sum((options.get("feature_groups") or {}).values())
    mlp = (options.hidden_dim, options.num_layers, options.dropout, members)
    if options.edge_dim is None:
        return MLPEncoder(options.node_dim, *mlp), None, linear(*readout)
    if not options.get("graph", True):
        if not feature_dim:
            raise RegalError(
                "model.graph=false reads the molecule features alone, and this data has none: "
                "add data.features=[...] (e.g. [minimol])"
            )
        return MLPEncoder(feature_dim, *mlp), None, linear(*readout)
    layers = (options.node_dim, options.edge_dim, options.hidden_dim, options.num_layers)
    if members is None:
        encoder = GINEEncoder(*layers, options.dropout)
    else:
        encoder = GroupedGINEEncoder(members, *layers, options.dropout)
    pool = aggregation_resolver(options.pooling)
    return encoder, pool, linear(options.hidden_dim + feature_dim, out_dim, members)


def pooled(
    model: nn.Module,
    x: Tensor,
    edge_index: Tensor | None,
    edge_attr: Tensor | None,
    index: Tensor,
    num_graphs: int,
    features: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """``model``'s encoder output pooled per graph, with the standardised molecule
    ``features`` after it (``options`` go to the encoder).

    ``model`` has the ``encoder`` and ``pool`` of :func:`encoder_readout`, and a
    ``feature_scaler`` (:class:`regal_torch.models.feature_scaling.FeatureScaler` or None),
    which standardises a table's rows or the molecule features first.

    Shapes:
        x: ``[V, node_dim]`` (a table: ``[B, node_dim]``, no edges); index: ``[V]``;
        features: ``[B, F]``; returns ``[B, hidden_dim (+ F)]`` (``[M, B, ...]`` with
        members; an MLP encoder: ``[B, hidden_dim]``).
    """
    scaler = model.feature_scaler
    if model.pool is None:  # a table's rows, or the molecule features alone: nothing to pool
        rows = x if features is None else features
        return model.encoder(rows if scaler is None else scaler(rows), **options)
    h = model.pool(model.encoder(x, edge_index, edge_attr, **options), index, dim_size=num_graphs)
    if features is None:
        return h
    features = features if scaler is None else scaler(features)
    if h.dim() == 3:  # members: the same features for each
        features = features.expand(h.shape[0], -1, -1)
    return torch.cat([h, features], dim=-1)
