"""Split-conformal prediction intervals, normalised by the predicted std.

On the validation molecules (never trained on) the score of molecule ``i`` is
:math:`s_i = |y_i - \\mu_i| / \\sigma_i`; with :math:`q` the
:math:`\\lceil (n+1)\\,c \\rceil`-th smallest of the ``n`` scores, the interval
:math:`\\mu \\pm q\\,\\sigma` of a new molecule covers its label with probability at least
``c`` (exchangeability; Vovk et al. 2005, Lei et al. 2018). Its width differs per molecule,
as :math:`\\sigma` does; the baseline it must beat is the constant-width interval of the same
coverage, :math:`\\mu \\pm q_0` with :math:`q_0` the same quantile of :math:`|y_i - \\mu_i|`.
The scale of :math:`\\sigma` does not matter (:math:`q` absorbs it), so a recalibrated and a raw
std give the same intervals.
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["conformal_quantile", "interval_metrics"]


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
