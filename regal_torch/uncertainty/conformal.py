"""Split-conformal prediction intervals, normalised by the predicted std.

On the validation molecules (never trained on) the score of molecule ``i`` is
:math:`s_i = |y_i - \\mu_i| / \\sigma_i`; with :math:`q` the
:math:`\\lceil (n+1)\\,c \\rceil`-th smallest of the ``n`` scores, the interval
:math:`\\mu \\pm q\\,\\sigma` of a new molecule covers its label with probability at least
``c`` (exchangeability; Vovk et al. 2005, Lei et al. 2018). Its width differs per molecule,
as :math:`\\sigma` does; the baseline it must beat is the constant-width interval of the same
coverage, :math:`\\mu \\pm q_0` with :math:`q_0` the same quantile of :math:`|y_i - \\mu_i|`.
The scale of :math:`\\sigma` does not matter (:math:`q` absorbs it), so a recalibrated and a raw
std give the same intervals. Below :func:`finite_size` validation molecules the rank
:math:`\\lceil (n+1)\\,c \\rceil` exceeds ``n`` and the interval is infinite
(:func:`too_few_warning` says so).
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["conformal_quantile", "finite_size", "interval_metrics", "too_few_warning"]


def conformal_quantile(scores: Tensor, coverage: float) -> float:
    """The :math:`\\lceil (n+1) c \\rceil`-th smallest score (inf when that exceeds ``n``).

    Shapes:
        scores: ``[n]``.
    """
    n = scores.numel()
    k = math.ceil((n + 1) * coverage)
    if k > n:
        return math.inf
    return scores.flatten().sort().values[k - 1].item()


def finite_size(coverage: float) -> int:
    """The fewest scores that give ``coverage`` a finite quantile: the least ``n`` with
    :math:`\\lceil (n+1) c \\rceil \\le n` (9 for 0.9, 19 for 0.95), computed as
    :func:`conformal_quantile` rounds.

    Raises:
        ValueError: ``coverage`` is not in (0, 1).
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1); got {coverage}")
    n = max(1, math.floor(coverage / (1 - coverage)) - 1)  # (n + 1) c <= n: n >= c / (1 - c)
    while math.ceil((n + 1) * coverage) > n:
        n += 1
    return n


def too_few_warning(coverage: float, n: int) -> str | None:
    """The warning for intervals fitted on ``n`` validation molecules, or None when their
    quantile is finite."""
    need = finite_size(coverage)
    if n >= need:
        return None
    return (
        f"predict.interval={coverage:g} needs at least {need} validation molecules for a "
        f"finite interval; there are {n}: the interval is infinite (raise "
        f"data.datamodule.val_size or lower predict.interval)"
    )


def interval_metrics(
    test_mean: Tensor,
    test_std: Tensor,
    test_target: Tensor,
    val_mean: Tensor,
    val_std: Tensor,
    val_target: Tensor,
    coverage: float,
) -> dict[str, float]:
    """Fit the intervals on val, score them on test (keys as in ``history.csv``).

    Returns: ``interval`` (``coverage``), ``conformal_q`` (:math:`q`), ``test_coverage`` and
    ``test_interval_width`` (mean width ``2 q sigma``), and the constant-width baseline's
    ``test_coverage_const`` and ``test_interval_width_const``.

    Shapes:
        every argument: ``[N_test]`` or ``[N_val]``, aligned.
    """
    val_error = (val_target.to(val_mean.device) - val_mean).abs()
    q = conformal_quantile(val_error / val_std, coverage)
    q0 = conformal_quantile(val_error, coverage)
    test_error = (test_target.to(test_mean.device) - test_mean).abs()
    return {
        "interval": coverage,
        "conformal_q": q,
        "test_coverage": (test_error <= q * test_std).double().mean().item(),
        "test_interval_width": (2 * q * test_std).mean().item(),
        "test_coverage_const": (test_error <= q0).double().mean().item(),
        "test_interval_width_const": 2 * q0,
    }
