"""A real oracle: the GFN2-xTB HOMO-LUMO gap of a molecule, in eV.

Use it as ``oracle=function oracle.function=regal_torch.oracles.xtb:homo_lumo_gap`` (or
``experiment=xtb_gap``). It needs the ``tblite`` package: ``pip install -e ".[xtb]"``.

The calculation is :func:`regal_torch.features.xtb.single_point` (RDKit ETKDG + MMFF94
geometry with a fixed seed, one GFN2-xTB single point), the same that ``data.features=[xtb]``
caches as molecule features; the gap is the lowest orbital energy with occupation below 1/2
less the highest with occupation above 1/2 (of 2; a radical's singly occupied orbital counts as
occupied). The same SMILES gives the same gap on every call.
"""

from __future__ import annotations

from regal_torch.features.xtb import _calculator, single_point

_calculator()  # a missing tblite is one error line when the oracle is named, not at its first call


def homo_lumo_gap(id: str, smiles: str) -> float:
    """The GFN2-xTB HOMO-LUMO gap in eV (``id`` is not used: the SMILES defines the molecule).

    Raises:
        ValueError: no geometry (:func:`regal_torch.features.xtb.geometry`).
        tblite.exceptions.TBLiteRuntimeError: the SCF did not converge.
    """
    return single_point(smiles)["gap"]
