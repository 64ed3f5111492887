"""Where labels come from."""

from __future__ import annotations

from torch import Tensor


class BenchmarkOracle:
    """Reveals labels that are already known (benchmark mode).

    Shapes:
        truth: ``[N]`` targets of every dataset position; ``query`` -> ``[k]``.
    """

    def __init__(self, truth: Tensor) -> None:
        self.truth = truth

    def query(self, positions: Tensor) -> Tensor:
        return self.truth[positions]
