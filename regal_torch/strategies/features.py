"""Features and kernels shared by the batch strategies: last-layer or gradient features, their
sketch and posterior, and squared distances computed in row blocks (never a pool-by-pool
matrix).

Features may be stored in half precision (:attr:`PredictionRequest.half_features`, a
strategy's ``half_features`` option): every computation on them runs in float32 on blocks of
:data:`_BLOCK_ROWS` rows (:func:`row_blocks`), so no full-size float32 copy is made. Every
full-size temporary is a block too, so a strategy's memory beyond its input is ``O(N)``.

The batch methods of Holzmüller et al. (JMLR 2023) work with a kernel
``k(x, x') = phi(x)^T phi(x')`` on features ``phi``, chosen by ``kernel``:

- ``ll`` (last layer): for a model whose output is linear in its embedding (every model
  here), the gradient of the output with respect to the last layer's weights is the
  embedding itself (plus a constant 1 for the bias, which cancels in distances), so this is
  the linear kernel on :attr:`Prediction.embedding`. ``sketch_dim`` projects it to that many
  dimensions with a Gaussian random matrix (the paper's ``rp`` transform).
- ``grad`` (all layers): the gradient of the output with respect to the weights of every
  linear layer, message passing included, as a sketch of ``sketch_dim`` dimensions (512 by
  default) that the model computes (:attr:`Prediction.gradients`,
  :mod:`regal_torch.models.gradient_features`): the paper's ``grad_rp`` kernel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext

# Pool rows per block when distances to many centers are computed at once.
_BLOCK_ROWS = 8192


KERNELS = {"ll": "embedding", "grad": "gradients"}  # kernel -> the Prediction field it uses
GRAD_SKETCH_DIM = 512  # default sketch dimension of the grad kernel


def compute_dtype(features: Tensor) -> torch.dtype:
    """What ``features`` are computed in: float32 when stored in half precision, else their
    own dtype."""
    return torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype


def row_blocks(
    features: Tensor, rows: int = _BLOCK_ROWS, split: bool = True
) -> Iterator[tuple[slice, Tensor]]:
    """``(rows, block)`` for consecutive blocks of ``rows`` rows of ``features``, each in
    :func:`compute_dtype` (a float32 copy of half-precision rows, a view otherwise).

    With ``split=False`` full-precision features come as one block (for a product whose
    output is ``[N]``, which has no large temporary); half precision is always split.

    Shapes:
        features: ``[N, D]``; yields slices of ``[N]`` and blocks ``[<= rows, D]``.
    """
    dtype = compute_dtype(features)
    if not split and features.dtype == dtype:
        yield slice(None), features
        return
    for start in range(0, features.shape[0], rows):
        block = slice(start, start + rows)
        yield block, features[block].to(dtype)


def sq_norms(features: Tensor) -> Tensor:
    """Squared row norms ``k(x, x)`` in :func:`compute_dtype`, by blocks of rows.

    Shapes:
        features: ``[N, D]`` -> ``[N]``.
    """
    out = features.new_empty(features.shape[0], dtype=compute_dtype(features))
    for rows, block in row_blocks(features):
        out[rows] = block.square().sum(1)
    return out


def map_rows(
    features: Tensor, matrix: Tensor, dtype: torch.dtype | None = None, split: bool = True
) -> Tensor:
    """``features @ matrix`` by blocks of rows (``split``: as in :func:`row_blocks`), stored
    as ``dtype`` (default: the features' own, so half-precision features stay half).

    Shapes:
        features: ``[N, D]``; matrix: ``[D, M]`` in :func:`compute_dtype` -> ``[N, M]``.
    """
    out = features.new_empty(features.shape[0], matrix.shape[1], dtype=dtype or features.dtype)
    for rows, block in row_blocks(features, split=split):
        out[rows] = block @ matrix
    return out


def row_of(features: Tensor, index: int) -> Tensor:
    """Row ``index`` of ``features`` in :func:`compute_dtype`, ``[D]``."""
    return features[index].to(compute_dtype(features))


def labeled_embedding(
    name: str, prediction: Prediction, context: SelectionContext, field: str = "embedding"
) -> Tensor:
    """The labeled set's features (``field`` of its prediction, the embedding by default)
    from the context, ``[L, D]`` (``[0, D]`` if none is labeled).

    Raises:
        RegalError: naming the missing piece when the labeled set is not empty but the
            context has no prediction over it, or that prediction lacks the field.
    """
    pool = getattr(prediction, field)
    if len(context.labeled) == 0:
        return pool.new_zeros(0, pool.shape[1])
    if context.labeled_prediction is None:
        raise RegalError(
            f"strategy {name} needs SelectionContext.labeled_prediction (the model's prediction "
            "over the labeled set), which the caller did not give"
        )
    labeled = getattr(context.labeled_prediction, field)
    if labeled is None:
        raise RegalError(
            f"strategy {name} needs Prediction.{field} of the labeled set, "
            "which this model does not provide"
        )
    return labeled.to(prediction.device, pool.dtype)


def labeled_targets(name: str, prediction: Prediction, context: SelectionContext) -> Tensor:
    """The labeled set's targets from the context, ``[L]``, nonempty.

    Raises:
        RegalError: when the context has no targets or the labeled set is empty.
    """
    if context.labeled_targets is None or len(context.labeled_targets) == 0:
        raise RegalError(
            f"strategy {name} needs SelectionContext.labeled_targets of a nonempty labeled set"
        )
    return context.labeled_targets.to(prediction.device, prediction.mean.dtype)


def kernel_features(
    name: str,
    prediction: Prediction,
    context: SelectionContext,
    sketch_dim: int | None,
    kernel: str = "ll",
) -> tuple[Tensor, Tensor]:
    """Features of pool and labeled set for ``kernel`` (see the module docstring).

    ``ll``: the embedding, projected to ``sketch_dim`` dimensions if it is given (the
    projection is drawn from ``context.generator``, so it is the same for the same seed).
    ``grad``: the gradient features as the model sketched them.

    Shapes:
        returns pool ``[N, D']`` and labeled ``[L, D']``, ``D' = sketch_dim or D``.
    """
    field = KERNELS[kernel]
    pool = getattr(prediction, field)
    labeled = labeled_embedding(name, prediction, context, field)
    if sketch_dim is None or kernel == "grad":
        return pool, labeled
    projection = torch.randn(pool.shape[1], sketch_dim, generator=context.generator)
    projection = projection.to(pool.device, compute_dtype(pool)) / math.sqrt(sketch_dim)
    return map_rows(pool, projection), map_rows(labeled, projection)


def check_kernel(kernel: str, sketch_dim: int | None) -> int | None:
    """The sketch dimension to use for ``kernel``: ``sketch_dim``, or for ``grad`` its
    default (:data:`GRAD_SKETCH_DIM`) when it is None.

    Raises:
        RegalError: an unknown kernel or a sketch dimension below 1.
    """
    if kernel not in KERNELS:
        raise RegalError(f"strategy.kernel={kernel!r} must be one of {', '.join(KERNELS)}")
    if sketch_dim is not None and not (isinstance(sketch_dim, int) and sketch_dim >= 1):
        raise RegalError(f"strategy.sketch_dim={sketch_dim!r} must be null or an integer >= 1")
    return GRAD_SKETCH_DIM if kernel == "grad" and sketch_dim is None else sketch_dim


def noise_variance(features: Tensor, noise: float) -> float:
    """Observation noise ``sigma^2 = noise x`` the mean of ``k(x, x)`` over the rows of
    ``features`` (``[N, D]``), so that ``noise`` does not depend on the features' scale."""
    return noise * sq_norms(features).mean().item()


def posterior_features(pool: Tensor, labeled: Tensor, sigma2: float) -> tuple[Tensor, Tensor]:
    """Features of the linear-kernel GP posterior after observing ``labeled`` with noise
    ``sigma2``.

    ``k_post(x, x') = k(x, x') - k(x, L) (K_LL + sigma2 I)^{-1} k(L, x')
    = phi(x)^T sigma2 (Phi_L^T Phi_L + sigma2 I)^{-1} phi(x')`` (Woodbury), so the posterior
    features are ``sqrt(sigma2) U^{-1} phi`` with ``U U^T = Phi_L^T Phi_L + sigma2 I``:
    one ``D x D`` Cholesky factor and one product, whatever the size of the labeled set.

    The features keep their dtype (half-precision ones are transformed in float32 blocks).

    Shapes:
        pool: ``[N, D]``; labeled: ``[L, D]`` -> ``[N, D]``, ``[L, D]``.
    """
    eye = torch.eye(pool.shape[1], dtype=torch.float64, device=pool.device)
    factor = torch.linalg.cholesky(labeled.double().T @ labeled.double() + sigma2 * eye)
    # Row features phi^T U^{-T} sqrt(sigma2).
    transform = torch.linalg.solve_triangular(factor, eye, upper=False).T * math.sqrt(sigma2)
    transform = transform.to(compute_dtype(pool))
    return map_rows(pool, transform), map_rows(labeled, transform)


def nearest_sq_distances(
    features: Tensor, centers: Tensor, norms: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Squared Euclidean distance of every row to its nearest center, and that center's row.

    Computed in blocks of rows, so memory is ``O(block x M)``, in :func:`compute_dtype`. With
    no centers the distances are ``inf`` and the indices 0.

    Shapes:
        features: ``[N, D]``; centers: ``[M, D]``; norms: ``[N]`` squared row norms (optional)
        -> ``[N]``, ``[N]``.
    """
    n, dtype = features.shape[0], compute_dtype(features)
    best = torch.full((n,), math.inf, dtype=dtype, device=features.device)
    closest = torch.zeros(n, dtype=torch.long, device=features.device)
    if centers.shape[0] == 0:
        return best, closest
    norms = sq_norms(features) if norms is None else norms
    centers = centers.to(dtype)
    center_norms = centers.square().sum(1)
    for rows, block in row_blocks(features):
        sq = norms[rows, None] + center_norms[None, :] - 2 * block @ centers.T
        best[rows], closest[rows] = sq.clamp_min(0).min(1)
    return best, closest


def sq_distances_to(features: Tensor, norms: Tensor, row: int) -> Tensor:
    """Squared Euclidean distance of every row of ``features`` to row ``row`` (0 at ``row``).

    Shapes:
        features: ``[N, D]``; norms: ``[N]`` squared row norms -> ``[N]``.
    """
    center, sq = features[row].to(norms.dtype), torch.empty_like(norms)
    for rows, block in row_blocks(features, split=False):
        torch.addmv(norms[rows], block, center, alpha=-2, out=sq[rows])
    sq.add_(norms[row]).clamp_min_(0)
    sq[row] = 0
    return sq
