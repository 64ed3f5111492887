"""Where labels come from."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.errors import RegalError


class BenchmarkOracle:
    """Reveals labels that are already known (benchmark mode).

    Raises:
        RegalError: some molecule has no label (benchmark mode needs every label).

    Shapes:
        truth: ``[N]`` targets of every dataset position; ``query`` -> ``[k]``.
    """

    def __init__(self, truth: Tensor) -> None:
        missing = torch.isnan(truth).nonzero().view(-1)
        if len(missing):
            shown = ", ".join(str(p) for p in missing[:10].tolist())
            raise RegalError(
                f"mode=benchmark needs a label for every molecule; {len(missing)} have none "
                f"(dataset positions {shown}{', ...' if len(missing) > 10 else ''})"
            )
        self.truth = truth

    def query(self, positions: Tensor) -> Tensor:
        return self.truth[positions]
