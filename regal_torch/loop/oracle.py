"""Where labels come from."""

from __future__ import annotations

import torch
from torch import Tensor

from regal_torch.errors import RegalError


class BenchmarkOracle:
    """Reveals labels that are already known (benchmark mode).

    Args:
        truth: The label of every dataset position (NaN: none).
        where: The place in the input file of every dataset position (``line 5``,
            ``record 3``; :attr:`regal_torch.data.molecules.MoleculeDataset.where`), named
            instead of dataset positions when a label is missing; None: name positions.

    Raises:
        RegalError: some molecule has no label (benchmark mode needs every label).

    Shapes:
        truth: ``[N]`` targets of every dataset position; ``query`` -> ``[k]``.
    """

    def __init__(self, truth: Tensor, where: list[str] | None = None) -> None:
        missing = torch.isnan(truth).nonzero().view(-1).tolist()
        if missing:
            more = ", ..." if len(missing) > 10 else ""
            if where is None:
                places = f"dataset positions {', '.join(str(p) for p in missing[:10])}{more}"
            else:
                places = f"{', '.join(where[p] for p in missing[:10])}{more} of data.path"
            raise RegalError(
                f"mode=benchmark needs a label for every molecule; {len(missing)} have none "
                f"({places}); mode=learn asks for the missing ones"
            )
        self.truth = truth

    def query(self, positions: Tensor) -> Tensor:
        return self.truth[positions]
