"""Kernels on the molecule features: one RBF kernel per feature group, added together.

A group (``minimol``, ``xtb``, ...: :attr:`regal_torch.features.molecule_features.
MoleculeFeatures.groups`) is a block of standardised columns. Each gets
``ScaleKernel(RBF)`` on its own columns (``active_dims``), with one length scale per column
(ARD) when the group has at most :data:`ARD_MAX` columns and one for the whole group above
that (512 MiniMol columns would give a GP at a few hundred labels 512 free length scales).
Length scales start at :math:`\\sqrt{d}` for a group of ``d`` columns: the typical distance
between two standardised points, so the kernel starts neither flat nor diagonal.
"""

from __future__ import annotations

import math

import gpytorch
import torch

ARD_MAX = 32


def feature_kernels(groups: dict[str, int], offset: int = 0) -> list[gpytorch.kernels.Kernel]:
    """``ScaleKernel(RBF)`` of each group, on columns ``offset ..`` in group order."""
    kernels = []
    for width in groups.values():
        dims = torch.arange(offset, offset + width)
        rbf = gpytorch.kernels.RBFKernel(
            ard_num_dims=width if width <= ARD_MAX else None, active_dims=dims
        )
        rbf.lengthscale = torch.full_like(rbf.lengthscale, math.sqrt(width))
        kernels.append(gpytorch.kernels.ScaleKernel(rbf))
        offset += width
    return kernels


def sum_kernel(kernels: list[gpytorch.kernels.Kernel]) -> gpytorch.kernels.Kernel:
    """The sum of ``kernels`` (the kernel itself when there is one)."""
    return kernels[0] if len(kernels) == 1 else gpytorch.kernels.AdditiveKernel(*kernels)
