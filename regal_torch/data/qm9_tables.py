"""Reading qm9pack's CSV tables offline: targets in PyG's order and units, XYZ geometries.

qm9pack ships the 130,831 characterised QM9 molecules as ``data/qm9_part1..3.csv`` (rows
sorted by the QM9 ``Index``). ``import qm9pack`` fails where ``pkg_resources`` is gone, so the
package folder is located with :func:`importlib.util.find_spec` and the CSVs are read directly.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "HAR2EV",
    "QM9_ATOM_REFS_EV",
    "QM9_SIZE",
    "QM9_TARGETS",
    "QM9_UNITS",
    "parse_elements",
    "parse_xyz",
    "qm9_targets",
    "read_qm9_table",
    "target_index",
]

HAR2EV = 27.211386246  # eV per hartree (CODATA 2018, as in PyG)
QM9_SIZE = 130_831

QM9_TARGETS: tuple[str, ...] = (
    "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
    "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C",
)  # fmt: skip

QM9_UNITS: dict[str, str] = {
    "mu": "D", "alpha": "bohr^3", "homo": "eV", "lumo": "eV", "gap": "eV", "r2": "bohr^2",
    "zpve": "eV", "U0": "eV", "U": "eV", "H": "eV", "G": "eV", "cv": "cal/(mol K)",
    "U0_atom": "eV", "U_atom": "eV", "H_atom": "eV", "G_atom": "eV",
    "A": "GHz", "B": "GHz", "C": "GHz",
}  # fmt: skip

# Energies of the isolated atoms (B3LYP/6-31G(2df,p), QM9's atomref table), in eV, for the
# targets U0, U, H, G; the *_atom targets subtract them, as PyG's QM9 does.
QM9_ATOM_REFS_EV: dict[str, dict[int, float]] = {
    "U0": {1: -13.61312172, 6: -1029.86312267, 7: -1485.30251237, 8: -2042.61123593,
           9: -2713.48485589},
    "U": {1: -13.5745904, 6: -1029.82456413, 7: -1485.26398105, 8: -2042.5727046,
          9: -2713.44632457},
    "H": {1: -13.54887564, 6: -1029.79887659, 7: -1485.2382935, 8: -2042.54701705,
          9: -2713.42063702},
    "G": {1: -13.90303183, 6: -1030.25891228, 7: -1485.71166277, 8: -2043.01812778,
          9: -2713.88796536},
}  # fmt: skip

# target name -> (qm9pack column, factor to PyG's unit); the *_atom targets are derived.
_COLUMNS: dict[str, tuple[str, float]] = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HAR2EV),
    "lumo": ("LUMO_au", HAR2EV),
    "gap": ("HOMO_LUMO_gap_au", HAR2EV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HAR2EV),
    "U0": ("InternalEnergy_0K_au", HAR2EV),
    "U": ("InternalEnergy_298K_au", HAR2EV),
    "H": ("Enthalphy_298K_au", HAR2EV),
    "G": ("GibbsFreeEnergy_298K_au", HAR2EV),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
    "A": ("RotA_GHz", 1.0),
    "B": ("RotB_GHz", 1.0),
    "C": ("RotC_GHz", 1.0),
}
_TABLE_COLUMNS = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"] + [
    col for col, _ in _COLUMNS.values()
]
_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def target_index(name: str) -> int:
    """Position of a QM9 target in ``y`` (PyG's order).

    Raises:
        ValueError: For an unknown name; the message lists the valid names and suggests the
            closest one.
    """
    if name in QM9_TARGETS:
        return QM9_TARGETS.index(name)
    close = difflib.get_close_matches(str(name), QM9_TARGETS, n=1, cutoff=0.5)
    if not close:  # case slips such as "U0_ATOM" or "GAP"
        lower = {t.lower(): t for t in QM9_TARGETS}
        close = [lower[str(name).lower()]] if str(name).lower() in lower else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown QM9 target {name!r}.{hint} Valid targets: {', '.join(QM9_TARGETS)}")


def qm9pack_data_dir() -> Path:
    """Folder holding qm9pack's CSV tables (found without importing qm9pack)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("qm9pack is not installed: pip install qm9pack")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (folder / "qm9_part1.csv").exists():
        raise FileNotFoundError(f"qm9pack data tables not found in {folder}")
    return folder


def read_qm9_table() -> pd.DataFrame:
    """Reads the columns needed for the dataset from all three qm9pack tables.

    Returns:
        One row per molecule, sorted by the QM9 ``Index``, with a fresh 0..n-1 index.
    """
    folder = qm9pack_data_dir()
    parts = [pd.read_csv(folder / f"qm9_part{i}.csv", usecols=_TABLE_COLUMNS) for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True)
    if len(table) != QM9_SIZE or not table["Index"].is_monotonic_increasing:
        raise ValueError(
            f"qm9pack tables in {folder}: expected {QM9_SIZE} rows sorted by Index, "
            f"found {len(table)}"
        )
    return table


def parse_xyz(strings: list[str], num_atoms: np.ndarray) -> np.ndarray:
    """Parses ``XYZ_Ang`` strings such as ``[[0.5,0.,1.],[...]]`` (not always valid JSON).

    Shapes:
        strings: ``n`` strings, num_atoms ``[n]`` -> coordinates ``[sum(num_atoms), 3]``
        float64 in Angstrom, molecules concatenated.
    """
    text = ",".join(strings).translate(str.maketrans("[]", "  "))
    coords = np.fromstring(text, sep=",")  # text mode: strict, raises on junk
    if coords.size != 3 * int(num_atoms.sum()):
        raise ValueError(f"XYZ_Ang: {coords.size} numbers for {int(num_atoms.sum())} atoms")
    return coords.reshape(-1, 3)


def parse_elements(strings: list[str]) -> np.ndarray:
    """Parses ``Elements`` strings such as ``['C','H','H','H','H']`` into atomic numbers.

    Shapes:
        ``n`` strings -> ``[total atoms]`` int64, molecules concatenated.
    """
    text = ",".join(strings).translate(str.maketrans("", "", "[]' \""))
    try:
        return np.array([_SYMBOL_TO_Z[s] for s in text.split(",")], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"Elements: unexpected element {err.args[0]!r} in QM9") from None


def qm9_targets(table: pd.DataFrame, z_all: np.ndarray, num_atoms: np.ndarray) -> np.ndarray:
    """The 19 targets in PyG's order and units.

    Args:
        table: Rows of :func:`read_qm9_table`.
        z_all: Atomic numbers of all atoms (hydrogens included), molecules concatenated.
        num_atoms: Number of atoms (hydrogens included) of each molecule.

    Shapes:
        table: ``n`` rows -> ``[n, 19]`` float32.
    """
    n = len(table)
    y = np.empty((n, len(QM9_TARGETS)), dtype=np.float64)
    for name, (column, factor) in _COLUMNS.items():
        y[:, QM9_TARGETS.index(name)] = table[column].to_numpy(np.float64) * factor
    mol = np.repeat(np.arange(n), num_atoms)
    for energy, refs in QM9_ATOM_REFS_EV.items():
        per_atom = np.zeros(119)
        per_atom[list(refs)] = list(refs.values())
        reference = np.bincount(mol, weights=per_atom[z_all], minlength=n)
        y[:, QM9_TARGETS.index(f"{energy}_atom")] = y[:, QM9_TARGETS.index(energy)] - reference
    return y.astype(np.float32)
