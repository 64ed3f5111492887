"""Cheap quantum chemistry as molecule features: one GFN2-xTB single point per molecule.

The geometry is RDKit's, never a data set's own (QM9's DFT geometries are an output of the
expensive calculation a model is meant to replace): explicit hydrogens, one ETKDG (v3)
conformer with a fixed seed (from random coordinates where the default start fails, as for
some strained cages), relaxed with the MMFF94 force field. On it, one GFN2-xTB single point
(tblite, electronic temperature 300 K, the molecule's total formal charge, one unpaired electron
if its electron count is odd). The same SMILES gives the same values on every call. About
20 ms a QM9 molecule on one core. ``pip install -e ".[xtb]"`` installs tblite.

:func:`single_point` is shared with the GFN2-xTB gap oracle (:mod:`regal_torch.oracles.xtb`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

import numpy as np
import rdkit
from rdkit import Chem
from rdkit.Chem import AllChem

from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer, missing_extra, reason_of

__all__ = ["PROPERTIES", "XTBProperties", "geometry", "single_point"]

HARTREE_EV = 27.211386246  # as PyG's QM9 targets
BOHR_ANGSTROM = 0.52917721067
AU_DEBYE = 2.541746473  # dipole moment: e bohr -> Debye
EMBED_SEED = 42

PROPERTIES = (
    "homo",  # highest occupied orbital energy (eV)
    "lumo",  # lowest unoccupied orbital energy (eV)
    "gap",  # lumo - homo (eV)
    "homo_1",  # the occupied orbital below the HOMO (eV; the HOMO's where there is none)
    "lumo_1",  # the unoccupied orbital above the LUMO (eV; the LUMO's where there is none)
    "energy",  # total energy (eV)
    "dipole",  # dipole moment (Debye)
    "quadrupole",  # Frobenius norm of the traceless quadrupole moment (e bohr^2)
    "charge_min",  # most negative atomic partial charge (e)
    "charge_max",  # most positive atomic partial charge (e)
)


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


def _calculator() -> Any:
    try:
        from tblite.interface import Calculator
    except ModuleNotFoundError as exc:
        raise missing_extra("GFN2-xTB (data.features=[xtb], oracles.xtb)", "tblite", "xtb") from exc
    return Calculator


def single_point(smiles: str) -> dict[str, float]:
    """The GFN2-xTB values of :data:`PROPERTIES` on the molecule's RDKit geometry.

    Orbitals with occupation above 1/2 (of 2) count as occupied (a radical's singly occupied
    orbital too).

    Raises:
        ValueError: no geometry (:func:`geometry`).
        tblite.exceptions.TBLiteRuntimeError: the SCF did not converge.
        RegalError: tblite is not installed.
    """
    calculator_class = _calculator()
    mol = geometry(smiles)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    positions = mol.GetConformer().GetPositions() / BOHR_ANGSTROM
    charge = Chem.GetFormalCharge(mol)
    calculator = calculator_class(
        "GFN2-xTB", numbers, positions, charge=charge, uhf=int(numbers.sum() - charge) % 2
    )
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    energies = result.get("orbital-energies") * HARTREE_EV
    occupations = result.get("orbital-occupations")
    occupied = np.sort(energies[occupations > 0.5])[::-1]
    empty = np.sort(energies[occupations < 0.5])
    q = result.get("quadrupole")  # xx, xy, yy, xz, yz, zz (traceless)
    charges = result.get("charges")
    return {
        "homo": float(occupied[0]),
        "lumo": float(empty[0]),
        "gap": float(empty[0] - occupied[0]),
        "homo_1": float(occupied[min(1, len(occupied) - 1)]),
        "lumo_1": float(empty[min(1, len(empty) - 1)]),
        "energy": float(result.get("energy")) * HARTREE_EV,
        "dipole": float(np.linalg.norm(result.get("dipole"))) * AU_DEBYE,
        "quadrupole": float(
            np.sqrt(q[0] ** 2 + q[2] ** 2 + q[5] ** 2 + 2 * (q[1] ** 2 + q[3] ** 2 + q[4] ** 2))
        ),
        "charge_min": float(charges.min()),
        "charge_max": float(charges.max()),
    }


class XTBProperties(Featurizer):
    """GFN2-xTB values of each molecule (:data:`PROPERTIES`; see the module docstring).

    A molecule fails, with its reason, where RDKit finds no geometry or MMFF94 parameters or
    the SCF does not converge.

    Args:
        use: The properties a run reads; None: :attr:`default_use`.

    Shapes:
        :meth:`compute`: ``n`` SMILES -> ``[n, len(PROPERTIES)]`` float32.
    """

    name = "xtb"
    version = 1
    columns = PROPERTIES
    default_use = None  # all of PROPERTIES
    extra = "xtb"

    def packages(self) -> dict[str, str]:
        try:
            tblite = importlib.metadata.version("tblite")
        except importlib.metadata.PackageNotFoundError as exc:
            raise missing_extra("data.features=[xtb]", "tblite", self.extra) from exc
        return {"tblite": tblite, "rdkit": rdkit.__version__}

    def start(self) -> None:
        _calculator()

    def compute(self, smiles: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        values = np.full((len(smiles), len(PROPERTIES)), np.nan, dtype=np.float32)
        reasons: list[str | None] = [None] * len(smiles)
        for i, s in enumerate(smiles):
            try:
                point = single_point(s)
            except Exception as exc:  # RDKit, MMFF and the SCF fail in their own ways
                if isinstance(exc, RegalError):
                    raise
                reasons[i] = reason_of(exc)
                continue
            values[i] = [point[name] for name in PROPERTIES]
        return values, reasons
