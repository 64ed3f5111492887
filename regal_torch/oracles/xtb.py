"""A real oracle: the GFN2-xTB HOMO-LUMO gap of a molecule, in eV.

Use it as ``oracle=function oracle.function=regal_torch.oracles.xtb:homo_lumo_gap`` (or
``experiment=xtb_gap``). It needs the ``tblite`` package: ``pip install -e ".[xtb]"``.

The geometry is RDKit's: explicit hydrogens, one ETKDG (v3) conformer with a fixed seed (from
random coordinates where the default start fails, as for some strained cages), then relaxed
with the MMFF94 force field; on it, one GFN2-xTB single point (tblite, electronic
temperature 300 K, the molecule's total formal charge, one unpaired electron if its electron
count is odd). The gap is the lowest orbital energy with occupation below 1/2 less the highest
with occupation above 1/2 (of 2; a radical's singly occupied orbital counts as occupied). The
same SMILES gives the same gap on every call.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from regal_torch.errors import RegalError

try:
    from tblite.interface import Calculator
except ModuleNotFoundError as exc:
    raise RegalError(
        'regal_torch.oracles.xtb needs the tblite package: pip install -e ".[xtb]" '
        "(or pip install tblite)"
    ) from exc

HARTREE_EV = 27.211386246  # as PyG's QM9 targets
BOHR_ANGSTROM = 0.52917721067
EMBED_SEED = 42


def geometry(smiles: str) -> Chem.Mol:
    """The molecule with hydrogens and one 3D conformer (ETKDG, fixed seed; MMFF94-relaxed).

    Raises:
        ValueError: RDKit cannot read the SMILES, embed it, or has no MMFF94 parameters for it.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot read SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = EMBED_SEED
    if AllChem.EmbedMolecule(mol, params) != 0:  # strained cages: start from random coordinates
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise ValueError("ETKDG found no 3D embedding")
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        raise ValueError("MMFF94 has no parameters for this molecule")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return mol


def homo_lumo_gap(id: str, smiles: str) -> float:
    """The GFN2-xTB HOMO-LUMO gap in eV (``id`` is not used: the SMILES defines the molecule).

    Raises:
        ValueError: no geometry (:func:`geometry`).
        tblite.exceptions.TBLiteRuntimeError: the SCF did not converge.
    """
    mol = geometry(smiles)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    positions = mol.GetConformer().GetPositions() / BOHR_ANGSTROM
    charge = Chem.GetFormalCharge(mol)
    calculator = Calculator(
        "GFN2-xTB", numbers, positions, charge=charge, uhf=int(numbers.sum() - charge) % 2
    )
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    energies = result.get("orbital-energies")
    occupations = result.get("orbital-occupations")
    homo = energies[occupations > 0.5].max()
    lumo = energies[occupations < 0.5].min()
    return float(lumo - homo) * HARTREE_EV
