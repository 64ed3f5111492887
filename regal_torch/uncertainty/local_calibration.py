"""Per-molecule recalibration from the validation errors of its nearest neighbours.

A model's own spread (dropout passes, ensemble members, GP variance) ranks its errors poorly on
QM9 (Spearman 0.14 for MC-dropout at 2,200 labels, BENCHMARKS.md ``qm9-study-uncertainty``).
A local error model does better (0.24): the variance of a molecule is the mean squared error of
the model on the ``k`` validation molecules nearest to it in the model's embedding (the input
of its last linear layer, where the model itself puts similar molecules together). It needs no
extra training, only the validation predictions each round already makes (``loop.recalibrate``
uses them for one global factor). One global factor on top, fitted on the validation set scored
leave-one-out, makes the local variances calibrated on average.

With few validation molecules the mean of ``k`` squared errors is noisy (``k = 2`` of 50), so
the local variance is shrunk toward the validation set's mean squared error by a prior worth
``w`` molecules, ``(k * local + w * mse) / (k + w)``, and the std a run uses is chosen on the
validation molecules, each scored from the others (leave one out), by Gaussian NLL among: the
local variance with ``w`` in :data:`PRIOR_WEIGHTS` (times ``k``), the constant ``mse`` (``w``
infinite) and the model's own variance, each times its fitted factor (:attr:`source`).
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
# The local variance's prior weights tried, as multiples of k (0: the local mean alone).
PRIOR_WEIGHTS = (0.0, 1.0, 4.0)


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
    """The std a run uses: the local variance of each molecule (the validation errors of its
    ``k`` nearest validation molecules in the embedding, shrunk toward their mean), the
    constant validation mean squared error or the model's own variance, whichever has the
    best leave-one-out NLL on the validation molecules, times its factor (see the module doc).

    Args:
        val: The model's prediction over the validation molecules (needs ``embedding``).
        val_target: Their true values.
        k: Neighbours per molecule.

    Attributes:
        source: ``local`` (with :attr:`prior`, the prior's weight in molecules), ``constant``
            or ``own``.
        validation_nll: The leave-one-out validation NLL of every candidate, by name
            (``local+W``, ``constant``, ``own``); :attr:`chosen` names the one used.

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
        self.mse = float(self.val_sq_error.mean())
        self.val_var = None if val.var is None else val.var.detach()
        self.validation_nll: dict[str, float] = {}
        best = None
        for name, source, prior, var in self._candidates():
            scale = fit_variance_scale(val.mean, var, val_target)
            nll = gaussian_nll(val.mean, (scale * var).clamp_min(1e-12), val_target)
            self.validation_nll[name] = nll
            if best is None or nll < best[0]:
                best = (nll, name, source, prior, scale)
        _, self.chosen, self.source, self.prior, self.scale = best

    def _candidates(self):  # noqa: ANN202  (name, source, prior, LOO validation variance [V])
        v = len(self.val_sq_error)
        local = neighbour_variance(
            self.val_embedding.float(), self.val_embedding.float(), self.val_sq_error, self.k, True
        )
        mse = (self.val_sq_error.sum() - self.val_sq_error) / (v - 1)  # each one's own left out
        for weight in PRIOR_WEIGHTS:
            prior = weight * self.k
            yield (
                f"local+{prior:g}",
                "local",
                prior,
                (self.k * local + prior * mse) / (self.k + prior),
            )
        yield "constant", "constant", 0.0, mse
        if self.val_var is not None:
            yield "own", "own", 0.0, self.val_var

    def _variance(self, prediction: Prediction | None) -> Tensor:
        """The variance of ``prediction``'s molecules, or of the validation molecules each
        from the others (None)."""
        embedding = self.val_embedding if prediction is None else prediction.embedding
        if self.source == "own":
            var = self.val_var if prediction is None else prediction.var
        elif self.source == "constant":
            n = len(embedding)
            total = self.val_sq_error.sum()
            var = (
                (total - self.val_sq_error) / (n - 1)
                if prediction is None
                else torch.full((n,), self.mse, device=embedding.device)
            )
        else:
            local = neighbour_variance(
                embedding.float(), self.val_embedding.float(), self.val_sq_error, self.k,
                prediction is None,
            )  # fmt: skip
            var = (self.k * local + self.prior * self.mse) / (self.k + self.prior)
        return (self.scale * var).clamp_min(1e-12)

    def variance(self, prediction: Prediction) -> Tensor:
        """The variance of every molecule of ``prediction``, ``[N]`` (strictly positive)."""
        return self._variance(prediction)

    def validation_variance(self) -> Tensor:
        """The variance of each validation molecule from the others' errors (its own left
        out), ``[V]``: what conformal intervals are fitted on."""
        return self._variance(None)

    def describe(self) -> str:
        """The std chosen, for the round line: ``local k=5 +5``, ``constant`` or ``own``."""
        if self.source == "local":
            return f"local k={self.k}" + (f" +{self.prior:g}" if self.prior else "")
        return self.source

    def state(self) -> dict[str, Tensor | int | float | str | None]:
        """What rebuilds it (a saved model's): ``k``, ``scale``, the source and prior, the
        validation embedding, squared errors and own variance."""
        return {
            "k": self.k,
            "scale": self.scale,
            "source": self.source,
            "prior": self.prior,
            "val_embedding": self.val_embedding.cpu(),
            "val_sq_error": self.val_sq_error.cpu(),
            "val_var": None if self.val_var is None else self.val_var.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict) -> NeighbourCalibration:
        """The calibration :meth:`state` describes (a model file from before the choice of
        std: the local variance without prior)."""
        calibration = cls.__new__(cls)
        calibration.k, calibration.scale = state["k"], state["scale"]
        calibration.source = state.get("source", "local")
        calibration.prior = state.get("prior", 0.0)
        calibration.val_embedding = state["val_embedding"]
        calibration.val_sq_error = state["val_sq_error"]
        calibration.val_var = state.get("val_var")
        calibration.mse = float(calibration.val_sq_error.mean())
        calibration.validation_nll = {}
        return calibration

    def factors(self, prediction: Prediction) -> Tensor:
        """Per-molecule factors turning ``prediction.var`` into the variance, ``[N]``."""
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
