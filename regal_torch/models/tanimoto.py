"""Morgan fingerprints from SMILES, and the Tanimoto kernel on them."""

from __future__ import annotations

from collections.abc import Sequence

import gpytorch
import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from torch import Tensor

from regal_torch.errors import RegalError


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, size: int = 2048) -> Tensor:
    """Binary Morgan (ECFP-like) fingerprints computed with RDKit.

    Shapes:
        output: ``[len(smiles), size]`` float32 of 0 and 1.
    """
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=size)
    rows = []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise RegalError(f"molecule {i}: RDKit cannot parse SMILES {s!r}")
        rows.append(generator.GetFingerprintAsNumPy(mol))
    return torch.from_numpy(np.stack(rows).astype(np.float32))


class TanimotoKernel(gpytorch.kernels.Kernel):
    r"""Tanimoto (Jaccard) similarity, positive semi-definite on binary vectors.

    .. math::
        k(a, b) = \frac{a^\top b}{\lVert a\rVert^2 + \lVert b\rVert^2 - a^\top b}

    No hyperparameters; wrap it in a ``ScaleKernel`` for an output scale.

    Shapes:
        x1: ``[N, D]``; x2: ``[M, D]`` -> ``[N, M]`` (``[N]`` with ``diag=True``).
    """

    has_lengthscale = False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        if diag:
            dot = (x1 * x2).sum(-1)
            n1, n2 = x1.pow(2).sum(-1), x2.pow(2).sum(-1)
        else:
            dot = x1 @ x2.transpose(-1, -2)
            n1, n2 = x1.pow(2).sum(-1).unsqueeze(-1), x2.pow(2).sum(-1).unsqueeze(-2)
        return dot / (n1 + n2 - dot).clamp_min(1e-12)
