"""RDKit molecule -> heavy-atom graph arrays (hydrogens implicit).

Nodes are RDKit's atoms in RDKit's order; each bond gives two directed edges, stored next to
each other: edges ``2k`` and ``2k + 1`` are bond ``k`` in RDKit's bond order, as
``(begin, end)`` and ``(end, begin)``, so the reverse of edge ``e`` is ``e ^ 1``.

Atom features (``ATOM_FEATURE_DIM = 36`` floats, each block a one-hot or a 0/1 flag):

====== ===================================================================================
slots  meaning
====== ===================================================================================
0-12   element: H, B, C, N, O, F, Si, P, S, Cl, Br, I, other (any other element, e.g. Se)
13     aromatic
14-19  hybridization: SP, SP2, SP3, SP3D, SP3D2, other (S, unspecified, ...)
20-23  formal charge: -1, 0, +1, other
24-28  total hydrogen count (implicit + explicit): 0, 1, 2, 3, 4 or more
29-34  degree (number of bonded atoms in the graph, i.e. heavy neighbours): 0..4, 5 or more
35     in a ring
====== ===================================================================================

Bond features (``BOND_FEATURE_DIM = 6`` floats):

====== ===================================================================================
slots  meaning
====== ===================================================================================
0-3    bond type: single, double, triple, aromatic (other types, e.g. dative, leave all 0)
4      conjugated
5      in a ring
====== ===================================================================================

Featurisation runs in two steps so that many molecules can be done at once: a Python loop
over RDKit atoms and bonds writes integer column codes (:func:`featurize_smiles_batch`),
and numpy turns the codes of a whole batch into one-hot rows (:func:`atom_codes_to_x`,
:func:`bond_codes_to_edges`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem.rdchem import BondType, HybridizationType

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = [
    "ATOM_ELEMENTS",
    "ATOM_FEATURE_DIM",
    "BOND_FEATURE_DIM",
    "FEATURIZER_VERSION",
    "atom_codes_to_x",
    "bond_codes_to_edges",
    "featurize_mols",
    "featurize_smiles_batch",
    "mol_graph",
    "parse_smiles",
    "smiles_to_data",
]

FEATURIZER_VERSION: int = 1
"""Raise it with any change to the features above: on-disk molecule caches are keyed by it
(:mod:`regal_torch.data.molecule_cache`) and rebuilt when it changes."""

ATOM_ELEMENTS: tuple[str, ...] = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I")

_PT = Chem.GetPeriodicTable()
_ELEMENT_COL = {_PT.GetAtomicNumber(s): i for i, s in enumerate(ATOM_ELEMENTS)}
_OTHER_ELEMENT_COL = len(ATOM_ELEMENTS)  # 12
_AROMATIC_COL = 13
_HYB_COL = {
    HybridizationType.SP: 14,
    HybridizationType.SP2: 15,
    HybridizationType.SP3: 16,
    HybridizationType.SP3D: 17,
    HybridizationType.SP3D2: 18,
}
_HYB_OTHER_COL = 19
_CHARGE_COL = {-1: 20, 0: 21, 1: 22}
_CHARGE_OTHER_COL = 23
_NUM_H_COL = 24  # + min(num_hs, 4)
_DEGREE_COL = 29  # + min(degree, 5)
_RING_COL = 35
ATOM_FEATURE_DIM: int = 36
ATOM_CODES_PER_ATOM = 7  # one column code per block; ATOM_FEATURE_DIM means "no bit"

_BOND_TYPE_COL = {BondType.SINGLE: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}
_CONJ_COL = 4
_BOND_RING_COL = 5
BOND_FEATURE_DIM: int = 6
BOND_CODES_PER_BOND = 3  # BOND_FEATURE_DIM means "no bit"


def _append_codes(
    mol: Chem.Mol,
    atom_codes: list[int],
    bond_codes: list[int],
    ends: list[int],
    atomic_nums: list[int],
    num_hs: list[int],
) -> None:
    """Appends the column codes of one molecule's atoms and bonds to flat lists.

    Atoms and bonds are fetched by index: RDKit's ``GetAtoms()`` / ``GetBonds()`` sequences
    are Python wrappers that cost about as much again as the features themselves.
    """
    na, nb = ATOM_FEATURE_DIM, BOND_FEATURE_DIM
    elem_col, hyb_col, charge_col, bond_col = _ELEMENT_COL, _HYB_COL, _CHARGE_COL, _BOND_TYPE_COL
    atom_at, bond_at = mol.GetAtomWithIdx, mol.GetBondWithIdx
    for i in range(mol.GetNumAtoms()):
        atom = atom_at(i)
        z = atom.GetAtomicNum()
        h = atom.GetTotalNumHs()
        atom_codes += (
            elem_col.get(z, _OTHER_ELEMENT_COL),
            _AROMATIC_COL if atom.GetIsAromatic() else na,
            hyb_col.get(atom.GetHybridization(), _HYB_OTHER_COL),
            charge_col.get(atom.GetFormalCharge(), _CHARGE_OTHER_COL),
            _NUM_H_COL + min(h, 4),
            _DEGREE_COL + min(atom.GetDegree(), 5),
            _RING_COL if atom.IsInRing() else na,
        )
        atomic_nums.append(z)
        num_hs.append(h)
    for i in range(mol.GetNumBonds()):
        bond = bond_at(i)
        ends += (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
        bond_codes += (
            bond_col.get(bond.GetBondType(), nb),
            _CONJ_COL if bond.GetIsConjugated() else nb,
            _BOND_RING_COL if bond.IsInRing() else nb,
        )


def _one_hot_rows(codes: np.ndarray, dim: int) -> np.ndarray:
    """Rows of 0/1 floats with a 1 at each code; a code equal to ``dim`` sets nothing."""
    n = codes.shape[0]
    flat = np.zeros(n * dim + 1, dtype=np.float32)  # last slot absorbs the "no bit" codes
    idx = codes.astype(np.int64)
    idx += (np.arange(n, dtype=np.int64) * dim)[:, None]
    idx[codes >= dim] = n * dim
    flat[idx.ravel()] = 1.0
    return flat[:-1].reshape(n, dim)


def atom_codes_to_x(atom_codes: np.ndarray) -> np.ndarray:
    """Turns atom column codes into atom feature rows.

    Args:
        atom_codes: Column codes, one row per atom (``ATOM_FEATURE_DIM`` means "no bit").

    Returns:
        The atom features.

    Shapes:
        atom_codes: ``[V, 7]`` integer -> ``[V, ATOM_FEATURE_DIM]`` float32.
    """
    return _one_hot_rows(atom_codes.reshape(-1, ATOM_CODES_PER_ATOM), ATOM_FEATURE_DIM)


def bond_codes_to_edges(ends: np.ndarray, bond_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turns bonds into directed edges (both directions, interleaved) and their features.

    Args:
        ends: Begin and end atom of each bond (indices local to each molecule).
        bond_codes: Column codes, one row per bond (``BOND_FEATURE_DIM`` means "no bit").

    Returns:
        ``(edge_index, edge_attr)``; edges ``2k`` and ``2k + 1`` come from bond ``k``.

    Shapes:
        ends: ``[B, 2]``, bond_codes: ``[B, 3]`` -> edge_index ``[2, 2B]`` int64,
        edge_attr ``[2B, BOND_FEATURE_DIM]`` float32.
    """
    ends = np.asarray(ends, dtype=np.int64).reshape(-1, 2)
    edge_index = np.empty((2, 2 * len(ends)), dtype=np.int64)
    edge_index[0, 0::2] = edge_index[1, 1::2] = ends[:, 0]
    edge_index[1, 0::2] = edge_index[0, 1::2] = ends[:, 1]
    attr = _one_hot_rows(bond_codes.reshape(-1, BOND_CODES_PER_BOND), BOND_FEATURE_DIM)
    return edge_index, np.repeat(attr, 2, axis=0)


def mol_graph(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Featurises an RDKit molecule as a heavy-atom graph (hydrogens implicit).

    Args:
        mol: A sanitised RDKit molecule; its atoms are the nodes, in RDKit's order.

    Returns:
        ``(x, edge_index, edge_attr)`` as numpy arrays (see the module docstring).

    Shapes:
        x: ``[V, ATOM_FEATURE_DIM]`` float32; edge_index: ``[2, 2B]`` int64;
        edge_attr: ``[2B, BOND_FEATURE_DIM]`` float32.
    """
    atom_codes: list[int] = []
    bond_codes: list[int] = []
    ends: list[int] = []
    _append_codes(mol, atom_codes, bond_codes, ends, [], [])
    x = atom_codes_to_x(np.asarray(atom_codes, dtype=np.int16))
    edge_index, edge_attr = bond_codes_to_edges(
        np.asarray(ends, dtype=np.int64), np.asarray(bond_codes, dtype=np.int16)
    )
    return x, edge_index, edge_attr


def _one_word(smiles: object) -> bool:
    """A string without whitespace inside it: RDKit reads a SMILES only up to the first space
    (``C C`` would be methane), so one with a space in it is not read at all."""
    return isinstance(smiles, str) and not any(c.isspace() for c in smiles.strip())


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parses a SMILES string with RDKit, without RDKit's log output. A SMILES with
    whitespace inside it is refused (RDKit would read it up to the first space).

    Raises:
        ValueError: ``cannot parse SMILES '...'`` if RDKit rejects it or it has no atoms.
    """
    _block = rdBase.BlockLogs()  # noqa: F841  (silences RDKit while alive)
    mol = Chem.MolFromSmiles(smiles) if _one_word(smiles) else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"cannot parse SMILES {smiles!r}")
    return mol


def smiles_to_data(smiles: str) -> Data:
    """Parses a SMILES string into a PyG graph.

    Args:
        smiles: The molecule.

    Returns:
        ``torch_geometric.data.Data`` with ``x``, ``edge_index``, ``edge_attr`` and ``smiles``.

    Raises:
        ValueError: ``cannot parse SMILES '...'`` for a string RDKit cannot parse.

    Shapes:
        x: ``[V, ATOM_FEATURE_DIM]``; edge_index: ``[2, 2B]``; edge_attr:
        ``[2B, BOND_FEATURE_DIM]``.
    """
    import torch
    from torch_geometric.data import Data

    x, edge_index, edge_attr = mol_graph(parse_smiles(smiles))
    return Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        smiles=smiles,
    )


def featurize_mols(
    mols: Iterable[Chem.Mol | None], n: int, canonical: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Featurises many RDKit molecules into compact column codes, skipping unreadable ones.

    Args:
        mols: ``n`` molecules; ``None`` (or a molecule without atoms) is unreadable.
        n: How many ``mols`` yields.
        canonical: ``[n]`` bools: the molecules whose canonical SMILES to hash (e.g. those
            with a label, to find repeats); ``None``: none.

    Returns:
        A dict of numpy arrays: ``atom_codes`` ``[V, 7]`` int8 (see :func:`atom_codes_to_x`),
        ``bond_codes`` ``[B, 3]`` int8, ``ends`` ``[B, 2]`` int32 (atom indices local to each
        molecule), ``atomic_num`` ``[V]`` int16, ``num_hs`` ``[V]`` int16 (total hydrogens),
        ``num_atoms`` ``[m]`` and ``num_bonds`` ``[m]`` int64, ``canonical`` ``[m]`` int64
        (a 64-bit hash of the canonical SMILES where asked, else 0), for the ``m`` readable
        molecules in input order (``V`` and ``B`` summed over them); ``invalid`` ``[n - m]``
        int64, the input positions of the unreadable ones.
    """
    atom_codes: list[int] = []
    bond_codes: list[int] = []
    ends: list[int] = []
    atomic_nums: list[int] = []
    num_hs: list[int] = []
    num_atoms = np.empty(n, dtype=np.int64)
    num_bonds = np.empty(n, dtype=np.int64)
    hashes = np.zeros(n, dtype=np.int64)
    invalid: list[int] = []
    m = 0
    for i, mol in enumerate(mols):
        if mol is None or mol.GetNumAtoms() == 0:
            invalid.append(i)
            continue
        _append_codes(mol, atom_codes, bond_codes, ends, atomic_nums, num_hs)
        num_atoms[m] = mol.GetNumAtoms()
        num_bonds[m] = mol.GetNumBonds()
        if canonical is not None and canonical[i]:
            digest = hashlib.blake2b(Chem.MolToSmiles(mol).encode(), digest_size=8).digest()
            hashes[m] = int.from_bytes(digest, "little", signed=True)
        m += 1
    return {
        "atom_codes": np.asarray(atom_codes, dtype=np.int8).reshape(-1, ATOM_CODES_PER_ATOM),
        "bond_codes": np.asarray(bond_codes, dtype=np.int8).reshape(-1, BOND_CODES_PER_BOND),
        "ends": np.asarray(ends, dtype=np.int32).reshape(-1, 2),
        "atomic_num": np.asarray(atomic_nums, dtype=np.int16),
        "num_hs": np.asarray(num_hs, dtype=np.int16),
        "num_atoms": num_atoms[:m],
        "num_bonds": num_bonds[:m],
        "canonical": hashes[:m],
        "invalid": np.asarray(invalid, dtype=np.int64),
    }


def featurize_smiles_batch(
    smiles: Sequence[str], skip_invalid: bool = False, canonical: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Featurises many SMILES into compact column codes (cheap to send between processes).

    Args:
        smiles: The molecules.
        skip_invalid: Skip SMILES that RDKit cannot parse (listed in ``invalid``) instead of
            raising.
        canonical: See :func:`featurize_mols`.

    Returns:
        The arrays of :func:`featurize_mols`.

    Raises:
        ValueError: ``cannot parse SMILES '...'`` naming the first invalid one, unless
            ``skip_invalid``.
    """
    _block = rdBase.BlockLogs()  # noqa: F841
    from_smiles = Chem.MolFromSmiles
    mols = (from_smiles(s) if _one_word(s) else None for s in smiles)
    out = featurize_mols(mols, len(smiles), canonical)
    if len(out["invalid"]) and not skip_invalid:
        raise ValueError(f"cannot parse SMILES {smiles[int(out['invalid'][0])]!r}")
    return out
