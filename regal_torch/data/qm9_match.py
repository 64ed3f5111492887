"""Matching the heavy atoms of a SMILES graph to the atoms of the QM9 XYZ geometry.

QM9's SMILES usually list the heavy atoms in the XYZ order, but not always (``N#CC#CC#N``).
The identity mapping is accepted for a molecule when, under it, the elements agree, every
SMILES bond joins two atoms closer than the sum of their covalent radii plus
:data:`BOND_TOLERANCE`, and every heavy atom has as many XYZ hydrogens nearest to it as the
SMILES gives it. Otherwise the mapping comes from an RDKit substructure match of the SMILES
graph with explicit hydrogens (elements and connectivity only) onto the graph that distances
give the XYZ atoms, first with the same tolerance, then with :data:`LOOSE_TOLERANCE` (two QM9
cage molecules, 133857 and 133859, have SMILES bonds stretched to 2.1-2.2 Angstrom in their
relaxed geometry). All checks of the identity mapping run vectorised over all molecules.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

__all__ = ["BOND_TOLERANCE", "LOOSE_TOLERANCE", "match_heavy_atoms"]

BOND_TOLERANCE = 0.45  # Angstrom added to the sum of covalent radii
LOOSE_TOLERANCE = 0.8  # second try, for bonds stretched in the relaxed geometry
_PT = Chem.GetPeriodicTable()
_RCOV = np.array([_PT.GetRcovalent(z) for z in range(119)])


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _identity_fails(
    feats: dict[str, np.ndarray], z_heavy: np.ndarray, pos_heavy: np.ndarray,
    pos_h: np.ndarray, mol_of_h: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Boolean ``[n]``: molecules for which SMILES atom i is not XYZ heavy atom i."""
    num_atoms, num_bonds = feats["num_atoms"], feats["num_bonds"]
    n = len(num_atoms)
    off = _offsets(num_atoms)
    mol_of_atom = np.repeat(np.arange(n), num_atoms)
    z_smiles = feats["atomic_num"].astype(np.int64)
    bad = np.bincount(mol_of_atom[z_smiles != z_heavy], minlength=n) > 0

    # Coordinates as separate columns: gathers and arithmetic on 1-D arrays are fastest.
    hx, hy, hz = (np.ascontiguousarray(pos_heavy[:, j]) for j in range(3))
    mol_of_bond = np.repeat(np.arange(n), num_bonds)
    u = feats["ends"][:, 0] + off[mol_of_bond]
    v = feats["ends"][:, 1] + off[mol_of_bond]
    length2 = (hx[u] - hx[v]) ** 2 + (hy[u] - hy[v]) ** 2 + (hz[u] - hz[v]) ** 2
    too_long = length2 > (_RCOV[z_smiles[u]] + _RCOV[z_smiles[v]] + BOND_TOLERANCE) ** 2
    bad |= np.bincount(mol_of_bond[too_long], minlength=n) > 0

    # Nearest heavy atom of every hydrogen, one candidate slot at a time (memory ~ #H);
    # slots past a molecule's last heavy atom repeat its last one.
    base = off[mol_of_h]
    last = num_atoms[mol_of_h] - 1
    nearest = base.copy()
    best = np.full(len(pos_h), np.inf)
    x, y, z = (np.ascontiguousarray(pos_h[:, j]) for j in range(3))
    for k in range(int(num_atoms.max(initial=0))):
        cand = base + np.minimum(k, last)
        dist2 = (x - hx[cand]) ** 2 + (y - hy[cand]) ** 2 + (z - hz[cand]) ** 2
        np.copyto(nearest, cand, where=dist2 < best)
        np.minimum(best, dist2, out=best)
    h_count = np.bincount(nearest, minlength=len(z_heavy))
    bad |= np.bincount(mol_of_atom[h_count != feats["num_hs"]], minlength=n) > 0
    return bad


def _graph(z: np.ndarray, bonds: np.ndarray) -> Chem.Mol:
    """Element/connectivity graph as an unsanitised RDKit molecule (all bonds single)."""
    mol = Chem.RWMol()
    for atomic_num in z.tolist():
        atom = Chem.Atom(int(atomic_num))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    for a, b in bonds.tolist():
        mol.AddBond(int(a), int(b), Chem.BondType.SINGLE)
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def _graph_match(
    smiles: str, z_all: np.ndarray, pos_all: np.ndarray, tolerance: float
) -> np.ndarray | None:
    """Local heavy-atom permutation (SMILES atom -> XYZ heavy rank), or None if none fits."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))  # hydrogens appended after heavy atoms
    query = _graph(
        np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
        np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).reshape(-1, 2),
    )
    heavy = np.flatnonzero(z_all != 1)
    hydro = np.flatnonzero(z_all == 1)
    dist = np.linalg.norm(pos_all[:, None] - pos_all[None], axis=-1)
    limit = _RCOV[z_all][:, None] + _RCOV[z_all][None] + tolerance
    hh = dist[np.ix_(heavy, heavy)] < limit[np.ix_(heavy, heavy)]
    iu, ju = np.nonzero(np.triu(hh, 1))
    bonds = [np.stack([heavy[iu], heavy[ju]], 1)]
    if len(hydro) and len(heavy):
        bonds.append(np.stack([hydro, heavy[dist[np.ix_(hydro, heavy)].argmin(1)]], 1))
    target = _graph(z_all, np.concatenate(bonds))
    matches = target.GetSubstructMatches(query, uniquify=False, maxMatches=1)
    if not matches:
        return None
    rank = np.full(len(z_all), -1)
    rank[heavy] = np.arange(len(heavy))
    return rank[np.asarray(matches[0][: mol.GetNumHeavyAtoms()])]


def match_heavy_atoms(
    smiles: list[str], feats: dict[str, np.ndarray], z_all: np.ndarray,
    pos_all: np.ndarray, num_all: np.ndarray, mol_ids: np.ndarray,
) -> tuple[np.ndarray, list[int], list[int]]:  # fmt: skip
    """For every SMILES heavy atom, the XYZ heavy atom at the same place.

    Args:
        smiles: The molecules (``n``).
        feats: Output of :func:`regal_torch.data.molecule_graphs.featurize_smiles_batch` for them.
        z_all: Atomic numbers of all XYZ atoms, hydrogens included, molecules concatenated.
        pos_all: Their coordinates (Angstrom).
        num_all: Number of XYZ atoms of each molecule.
        mol_ids: QM9 indices, for error messages and the report.

    Returns:
        ``(perm, remapped, stretched)``: ``z_all[heavy][perm]`` and ``pos_all[heavy][perm]``
        are in graph node order; ``remapped`` lists the QM9 indices whose mapping is not the
        identity, ``stretched`` those matched only with :data:`LOOSE_TOLERANCE`.

    Raises:
        ValueError: Naming a molecule whose atoms cannot be matched.

    Shapes:
        z_all: ``[A]``, pos_all: ``[A, 3]``, num_all: ``[n]`` -> perm ``[V]`` int64 with
        ``V = feats["num_atoms"].sum()``.
    """
    n = len(smiles)
    num_atoms = feats["num_atoms"]
    is_heavy = z_all != 1
    mol_of_all = np.repeat(np.arange(n), num_all)
    heavy_counts = np.bincount(mol_of_all[is_heavy], minlength=n)
    wrong = np.flatnonzero(heavy_counts != num_atoms)
    if len(wrong):
        i = wrong[0]
        raise ValueError(
            f"QM9 molecule {int(mol_ids[i])} ({smiles[i]!r}): {int(num_atoms[i])} heavy atoms "
            f"in the SMILES but {int(heavy_counts[i])} in the XYZ"
        )
    bad = _identity_fails(
        feats, z_all[is_heavy], pos_all[is_heavy], pos_all[~is_heavy], mol_of_all[~is_heavy]
    )
    perm = np.arange(int(num_atoms.sum()), dtype=np.int64)
    off, off_all = _offsets(num_atoms), _offsets(num_all)
    remapped: list[int] = []
    stretched: list[int] = []
    for i in np.flatnonzero(bad).tolist():
        lo, hi = off_all[i], off_all[i + 1]
        local = _graph_match(smiles[i], z_all[lo:hi], pos_all[lo:hi], BOND_TOLERANCE)
        if local is None:
            local = _graph_match(smiles[i], z_all[lo:hi], pos_all[lo:hi], LOOSE_TOLERANCE)
            stretched.append(int(mol_ids[i]))
        if local is None:
            raise ValueError(
                f"QM9 molecule {int(mol_ids[i])} ({smiles[i]!r}): cannot match the SMILES "
                "atoms to the XYZ atoms (elements, bond lengths and hydrogens disagree)"
            )
        if (local != np.arange(len(local))).any():
            remapped.append(int(mol_ids[i]))
        perm[off[i] : off[i + 1]] = off[i] + local
    return perm, remapped, stretched
