"""Per-molecule recalibration from the validation errors of its nearest neighbours.

A model's own spread (dropout passes, ensemble members, GP variance) ranks its errors poorly on
QM9 (Spearman 0.14 for MC-dropout at 2,200 labels, BENCHMARKS.md ``qm9-study-uncertainty``).
A local error model does better (0.24): the variance of a molecule is the mean squared error of
the model on the ``k`` validation molecules nearest to it in the model's embedding (the input
of its last linear layer, where the model itself puts similar molecules together). It needs no
extra training, only the validation predictions each round already makes (``loop.recalibrate``
uses them for one global factor). One global factor on top, fitted on the validation set scored
leave-one-out, makes the local variances calibrated on average.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction
from regal_torch.uncertainty.calibration import (
    error_std_spearman,
    fit_variance_scale,
    gaussian_nll,
    miscalibration_area,
    scale_variance,
    spearman_ceiling,
)

# Query rows per block of the query-by-validation distance matrix.
_BLOCK_ROWS = 4096


def neighbour_variance(
    query: Tensor, val: Tensor, val_sq_error: Tensor, k: int, leave_one_out: bool = False
) -> Tensor:
    """Mean squared validation error over the ``k`` validation rows nearest to each query row.

    Computed in blocks of query rows, so memory is ``O(block x V)``.

    Args:
        query: Embeddings of the molecules to score.
        val: Embeddings of the validation molecules.
        val_sq_error: Squared error of the model on each validation molecule.
        k: Neighbours per query (at most V, or V - 1 with ``leave_one_out``).
        leave_one_out: The queries are the validation rows themselves (same order); each one's
            own error is left out.

    Shapes:
        query: ``[N, D]``; val: ``[V, D]``; val_sq_error: ``[V]`` -> ``[N]``.
    """
    out = torch.empty(query.shape[0], dtype=val_sq_error.dtype, device=query.device)
    for start in range(0, query.shape[0], _BLOCK_ROWS):
        block = query[start : start + _BLOCK_ROWS]
        sq = torch.cdist(block, val).square()
        if leave_one_out:
            rows = torch.arange(len(block), device=sq.device)
            sq[rows, rows + start] = torch.inf
        nearest = sq.topk(k, dim=1, largest=False).indices
        out[start : start + len(block)] = val_sq_error[nearest].mean(1)
    return out


class NeighbourCalibration:
    """Variance per molecule from the validation errors of its ``k`` nearest validation
    molecules in the embedding, times one factor fitted on the validation set left one out
    (see the module doc).

    Args:
        val: The model's prediction over the validation molecules (needs ``embedding``).
        val_target: Their true values.
        k: Neighbours per molecule.

    Shapes:
        val_target: ``[V]``; ``factors(prediction)``: prediction over N -> ``[N]``.
    """

    def __init__(self, val: Prediction, val_target: Tensor, k: int) -> None:
        if val.embedding is None:
            raise RegalError(
                "loop.local_neighbours needs Prediction.embedding, which this model does not "
                "provide"
            )
        if not 1 <= k < len(val):
            raise RegalError(
                f"loop.local_neighbours={k} must be between 1 and the number of validation "
                f"molecules less one ({len(val) - 1})"
            )
        self.val_embedding, self.k = val.embedding, k
        val_target = val_target.to(val.device)
        self.val_sq_error = (val.mean - val_target).square()
        self.scale = 1.0
        self.scale = fit_variance_scale(val.mean, self._variance(val.embedding, True), val_target)

    def _variance(self, embedding: Tensor, leave_one_out: bool) -> Tensor:
        var = neighbour_variance(
            embedding.float(), self.val_embedding.float(), self.val_sq_error, self.k, leave_one_out
        )
        return (self.scale * var).clamp_min(1e-12)

    def variance(self, prediction: Prediction) -> Tensor:
        """The local variance of every molecule of ``prediction``, ``[N]`` (strictly positive)."""
        return self._variance(prediction.embedding, False)

    def validation_variance(self) -> Tensor:
        """The local variance of each validation molecule from the others' errors (its own
        left out), ``[V]``: what conformal intervals are fitted on."""
        return self._variance(self.val_embedding, True)

    def state(self) -> dict[str, Tensor | int | float]:
        """What rebuilds it (a saved model's): ``k``, ``scale``, the validation embedding and
        squared errors."""
        return {
            "k": self.k,
            "scale": self.scale,
            "val_embedding": self.val_embedding.cpu(),
            "val_sq_error": self.val_sq_error.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict) -> NeighbourCalibration:
        """The calibration :meth:`state` describes."""
        calibration = cls.__new__(cls)
        calibration.k, calibration.scale = state["k"], state["scale"]
        calibration.val_embedding = state["val_embedding"]
        calibration.val_sq_error = state["val_sq_error"]
        return calibration

    def factors(self, prediction: Prediction) -> Tensor:
        """Per-molecule factors turning ``prediction.var`` into the local variance, ``[N]``."""
        return self.variance(prediction) / prediction.var


def neighbour_count(option: float | None, n_val: int) -> int | None:
    """``loop.local_neighbours`` as a count: None (off), a count, or a fraction of the
    ``n_val`` validation molecules (at least 1, at most ``n_val - 1``)."""
    if option is None:
        return None
    if isinstance(option, float) and 0 < option < 1:
        return max(1, min(round(option * n_val), n_val - 1))
    return int(option)


def local_calibration_metrics(
    calibration: NeighbourCalibration, test: Prediction, test_target: Tensor
) -> dict[str, float]:
    """Test NLL, Spearman(|error|, std) and miscalibration area of the local variance
    (keys ``test_nll_local``, ``test_spearman_local`` and its ceiling
    ``test_spearman_ceiling_local``, ``test_miscal_local``).

    Shapes:
        test_target: ``[N_test]``, aligned with ``test``.
    """
    test_target = test_target.to(test.device)
    var = calibration.variance(test)
    return {
        "test_nll_local": gaussian_nll(test.mean, var, test_target),
        "test_spearman_local": error_std_spearman(test.mean, var, test_target),
        "test_spearman_ceiling_local": spearman_ceiling(var),
        "test_miscal_local": miscalibration_area(test.mean, var, test_target),
    }


Recalibration = Callable[[Prediction], Prediction]


def recalibration(
    enabled: bool, var_scale: float, local: NeighbourCalibration | None
) -> Recalibration:
    """What the strategy's predictions go through each round: the local variance, the global
    factor ``var_scale`` or nothing (``loop.local_neighbours``, ``loop.recalibrate``)."""
    if not enabled:
        return lambda prediction: prediction
    if local is not None:
        return lambda prediction: (
            prediction
            if prediction.var is None
            else scale_variance(prediction, local.factors(prediction))
        )
    return lambda prediction: scale_variance(prediction, var_scale)
