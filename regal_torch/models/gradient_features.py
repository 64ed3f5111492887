r"""Per-molecule gradient features of a network: the ``grad`` kernel of Holzmüller et al.
(JMLR 2023, bmdal-reg), sketched without ever forming a gradient.

For a network :math:`f` with linear layers :math:`l` (``y = x W^T + b``), molecule
:math:`G`'s gradient with respect to layer :math:`l`'s weight and bias is a sum over the rows
the layer sees for it (its atoms, its bonds, or the molecule itself):

.. math::
    g_l(G) = \sum_{r \in G} d_r \otimes [x_r, 1], \qquad
    d_r = \partial f(G) / \partial y_r,

and the gradient kernel is :math:`k(G, G') = \sum_l \langle g_l(G), g_l(G') \rangle_F
= \sum_l \sum_{r \in G, r' \in G'} ([x_r, 1] \cdot [x_{r'}, 1]) (d_r \cdot d_{r'})`.

One backward pass gives every :math:`d_r` of a batch: in eval mode (no dropout, batch norm
on running statistics) a molecule's output depends only on its own rows, so the gradient of
:math:`\sum_G f(G)` with respect to row :math:`r`'s output is :math:`\partial f(G(r)) /
\partial y_r`.

Sketch (``sketch_dim = s``): per layer, Gaussian matrices :math:`P_l` (``[in + 1, s]``) and
:math:`Q_l` (``[out, s]``) with standard normal entries, and

.. math::
    \phi(G) = s^{-1/2} \sum_l \sum_{r \in G} ([x_r, 1] P_l) \odot (d_r Q_l),

a tensor sketch, linear in :math:`g_l(G)`, with :math:`E[\phi(G) \cdot \phi(G')] = k(G, G')`.
Each entry's standard deviation is at most :math:`3 \sqrt{\sum_l B_l(G)^2 B_l(G')^2 / s}`
with :math:`B_l(G) = \sum_{r \in G} \|[x_r, 1]\| \|d_r\|`. Cost per layer:
``rows x (in + 1 + out) x s`` multiply-adds; memory ``rows x s`` per batch. Without a sketch
(``sketch_dim=None``) the features are the exact gradients ``[B, sum_l out_l (in_l + 1)]``,
meant for small networks and tests.

Layers may be ``nn.Linear``, PyG's ``Linear`` (``weight`` ``[out, in]``) or
:class:`regal_torch.models.grouped_gine.GroupedLinear` (``weight`` ``[M, in, out]``, M
independent members, inputs ``[R, in]`` or ``[M, R, in]``, outputs ``[M, R, out]``); a
member's gradient gets its own projections, so the kernel sums over members too.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

LEVELS = ("node", "edge", "graph")


@dataclass(frozen=True)
class GradientLayer:
    """A linear layer and what its input rows are: atoms (``node``), directed bonds
    (``edge``) or molecules (``graph``)."""

    module: nn.Module
    level: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}; got {self.level!r}")


def _row_graphs(batch: Batch, level: str) -> Tensor:
    """The molecule of every row of a layer at ``level``, ``[R]``."""
    if level == "node":
        return batch.batch
    if level == "edge":
        return batch.batch[batch.edge_index[0]]
    return torch.arange(batch.num_graphs, device=batch.x.device)


def _grouped(module: nn.Module) -> bool:
    return module.weight.dim() == 3


def _dims(module: nn.Module) -> tuple[int, int, int]:
    """Members, input width and output width of a layer (members 1 unless grouped)."""
    weight = module.weight
    if _grouped(module):
        return weight.shape[0], weight.shape[1], weight.shape[2]
    return 1, weight.shape[1], weight.shape[0]


class GradientSketch:
    """The random projections of one sketch: the same ``seed`` gives the same features, so
    pool and labeled set sketched with one instance (or two of one seed) share a kernel.

    Args:
        sketch_dim: Sketch dimension ``s`` (``None``: exact gradients, no projection).
        seed: Seed of the projections (drawn on the CPU, then moved to the layers' device).
    """

    def __init__(self, sketch_dim: int | None, seed: int = 0) -> None:
        if sketch_dim is not None and sketch_dim < 1:
            raise ValueError(f"sketch_dim must be >= 1 or None; got {sketch_dim}")
        self.sketch_dim, self.seed = sketch_dim, seed
        self._projections: dict[tuple, tuple[Tensor, Tensor]] = {}

    def projections(self, index: int, module: nn.Module) -> tuple[Tensor, Tensor]:
        """Layer ``index``'s input and output projections, ``[M, in + 1, s]`` and
        ``[M, out, s]``, drawn once from ``(seed, index)`` on the CPU and kept on the layer's
        device (so a pool scored batch by batch draws and moves them once)."""
        members, n_in, n_out = _dims(module)
        weight = module.weight
        key = (index, members, n_in, n_out, weight.device, weight.dtype)
        if key not in self._projections:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            s = self.sketch_dim
            p = torch.randn(members, n_in + 1, s, generator=generator)
            q = torch.randn(members, n_out, s, generator=generator)
            self._projections[key] = (
                p.to(weight.device, weight.dtype),
                q.to(weight.device, weight.dtype),
            )
        return self._projections[key]

    def dim(self, layers: list[GradientLayer]) -> int:
        """Feature dimension for ``layers``: ``s``, or the number of their parameters."""
        if self.sketch_dim is not None:
            return self.sketch_dim
        return sum(m * n_out * (n_in + 1) for m, n_in, n_out in (_dims(g.module) for g in layers))


@functools.lru_cache(maxsize=2)
def cached_sketch(sketch_dim: int | None, seed: int) -> GradientSketch:
    """The :class:`GradientSketch` of ``(sketch_dim, seed)``, made once: every batch of a
    prediction (and the labeled set's, which shares the seed) reuses its projections."""
    return GradientSketch(sketch_dim, seed)


def gradient_features(
    output: Callable[[Batch], Tensor],
    layers: list[GradientLayer],
    batch: Batch,
    sketch: GradientSketch,
) -> Tensor:
    """Sketched (or exact) per-molecule gradients of ``output`` for the molecules of ``batch``.

    Runs one forward and one backward pass with autograd on, even inside Lightning's
    ``predict`` (inference mode): the batch is cloned out of inference mode first. The
    caller puts the network in eval mode (see the module docstring).

    Args:
        output: The network's output per molecule, ``batch -> [B]``.
        layers: Every linear layer whose weights the gradient covers, with its row level.
        batch: A PyG ``Batch`` of B molecules.
        sketch: The projections (or ``GradientSketch(None)`` for exact gradients).

    Shapes:
        returns ``[B, s]`` (``[B, sum_l M_l out_l (in_l + 1)]`` without a sketch).
    """
    records: list[tuple[int, Tensor, Tensor]] = []
    hooks = [
        layer.module.register_forward_hook(
            lambda module, args, out, i=i: records.append((i, args[0], out))
        )
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            batch = copy.copy(batch).apply(torch.Tensor.clone)
            out = output(batch)
            grads = torch.autograd.grad(out.sum(), [o for _, _, o in records], allow_unused=True)
    finally:
        for hook in hooks:
            hook.remove()
    features = out.new_zeros(batch.num_graphs, sketch.dim(layers))
    offset = 0
    offsets = []
    for layer in layers:  # exact features: each layer's block of columns
        members, n_in, n_out = _dims(layer.module)
        offsets.append(offset)
        offset += members * n_out * (n_in + 1)
    with torch.no_grad():
        for (i, x, _), d in zip(records, grads, strict=True):
            if d is None:  # a layer that does not reach the output
                continue
            layer = layers[i]
            graphs = _row_graphs(batch, layer.level)
            x, d = _as_members(x.detach(), d, layer.module)
            x = torch.cat([x, x.new_ones(*x.shape[:-1], 1)], -1)  # [M, R, in + 1]
            if sketch.sketch_dim is None:
                rows = torch.einsum("mro,mri->rmoi", d, x).reshape(len(graphs), -1)
                cols = slice(offsets[i], offsets[i] + rows.shape[1])
                features[:, cols].index_add_(0, graphs, rows)
            else:
                p, q = sketch.projections(i, layer.module)
                rows = (torch.bmm(x, p) * torch.bmm(d, q)).sum(0)  # [R, s]
                features.index_add_(0, graphs, rows)
    if sketch.sketch_dim is not None:
        features /= math.sqrt(sketch.sketch_dim)
    return features


def _as_members(x: Tensor, d: Tensor, module: nn.Module) -> tuple[Tensor, Tensor]:
    """Input and output gradient as ``[M, R, in]`` and ``[M, R, out]``."""
    if not _grouped(module):
        return x.reshape(1, -1, x.shape[-1]), d.reshape(1, -1, d.shape[-1])
    if x.dim() == 2:
        x = x.expand(d.shape[0], -1, -1)
    return x, d
