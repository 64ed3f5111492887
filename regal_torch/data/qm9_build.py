"""Building the collated QM9 storage from qm9pack rows, in parallel over chunks of molecules.

Each worker featurises a chunk (SMILES -> integer column codes), parses its XYZ geometry,
matches the SMILES heavy atoms to the XYZ atoms and computes the 19 targets, and returns
compact numpy arrays. The parent concatenates them, one-hot encodes the codes once, and writes
PyG's collated ``InMemoryDataset`` storage (one tensor per attribute plus ``slices``) directly,
without creating one ``Data`` object per molecule.
"""

from __future__ import annotations

import math
import multiprocessing

import numpy as np
import pandas as pd
import torch

from regal_torch.cores import available_cpus
from regal_torch.data.molecule_graphs import (
    atom_codes_to_x,
    bond_codes_to_edges,
    featurize_smiles_batch,
)
from regal_torch.data.qm9_match import match_heavy_atoms
from regal_torch.data.qm9_tables import parse_elements, parse_xyz, qm9_targets

__all__ = ["build_qm9_storage"]

_MIN_PARALLEL = 4_000  # below this many molecules a pool costs more than it saves


def _build_chunk(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Featurises, parses and atom-matches one chunk of table rows (runs in a worker)."""
    smiles = rows["SMILES"].tolist()
    mol_ids = rows["Index"].to_numpy(np.int64)
    num_all = rows["N_atoms"].to_numpy(np.int64)
    feats = featurize_smiles_batch(smiles)
    z_all = parse_elements(rows["Elements"].tolist())
    pos_all = parse_xyz(rows["XYZ_Ang"].tolist(), num_all)
    perm, remapped, stretched = match_heavy_atoms(smiles, feats, z_all, pos_all, num_all, mol_ids)
    heavy = z_all != 1
    out = {k: feats[k] for k in ("atom_codes", "bond_codes", "ends", "num_atoms", "num_bonds")}
    out["pos"] = pos_all[heavy][perm].astype(np.float32)
    out["z"] = z_all[heavy][perm].astype(np.int8)
    out["y"] = qm9_targets(rows, z_all, num_all)
    out["mol_id"] = mol_ids
    out["remapped"] = np.asarray(remapped, dtype=np.int64)
    out["stretched"] = np.asarray(stretched, dtype=np.int64)
    return out


def _run_chunks(table: pd.DataFrame, workers: int) -> list[dict[str, np.ndarray]]:
    n = len(table)
    # A daemonic process (e.g. a DataLoader worker) may not start a pool.
    if workers <= 1 or n < _MIN_PARALLEL or multiprocessing.current_process().daemon:
        return [_build_chunk(table)]
    size = max(1_000, math.ceil(n / (workers * 16)))
    chunks = [table.iloc[i : i + size] for i in range(0, n, size)]
    # fork: workers inherit the imported modules and only touch numpy and RDKit.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(min(workers, len(chunks))) as pool:
        return pool.map(_build_chunk, chunks, chunksize=1)


def _offsets(counts: np.ndarray) -> torch.Tensor:
    out = torch.zeros(len(counts) + 1, dtype=torch.long)
    torch.cumsum(torch.from_numpy(np.asarray(counts, dtype=np.int64)), 0, out=out[1:])
    return out


def build_qm9_storage(
    table: pd.DataFrame, workers: int | None = None
) -> tuple[dict[str, torch.Tensor | list[str]], dict[str, torch.Tensor], dict[str, list[int]]]:
    """Builds the collated storage of the given qm9pack rows.

    Args:
        table: Rows of :func:`regal_torch.data.qm9_tables.read_qm9_table`, in dataset order.
        workers: Processes to use; ``None`` means all available cores.

    Returns:
        ``(storage, slices, report)``: ``Data.from_dict(storage)`` and ``slices`` are the
        format of ``InMemoryDataset.save``/``load``; ``report`` has the QM9 indices that
        needed a non-identity atom mapping (``remapped``) or a loose bond tolerance
        (``stretched``).

    Shapes:
        storage: ``x [V, ATOM_FEATURE_DIM]``, ``edge_index [2, E]`` (node indices local to
        each molecule), ``edge_attr [E, BOND_FEATURE_DIM]``, ``pos [V, 3]``, ``z [V]``,
        ``y [n, 19]``, ``mol_id [n]``, ``smiles`` (``n`` strings); slices: ``[n + 1]`` each.
    """
    parts = _run_chunks(table, available_cpus() if workers is None else workers)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    x = atom_codes_to_x(cat["atom_codes"])
    edge_index, edge_attr = bond_codes_to_edges(cat["ends"], cat["bond_codes"])
    storage: dict[str, torch.Tensor | list[str]] = {
        "x": torch.from_numpy(x),
        "edge_index": torch.from_numpy(edge_index),
        "edge_attr": torch.from_numpy(edge_attr),
        "pos": torch.from_numpy(cat["pos"]),
        "z": torch.from_numpy(cat["z"].astype(np.int64)),
        "y": torch.from_numpy(cat["y"]),
        "mol_id": torch.from_numpy(cat["mol_id"]),
        "smiles": table["SMILES"].tolist(),
    }
    per_atom = _offsets(cat["num_atoms"])
    per_edge = _offsets(2 * cat["num_bonds"])
    per_mol = torch.arange(len(table) + 1)
    slices = {
        "x": per_atom,
        "edge_index": per_edge,
        "edge_attr": per_edge.clone(),
        "pos": per_atom.clone(),
        "z": per_atom.clone(),
        "y": per_mol,
        "mol_id": per_mol.clone(),
        "smiles": per_mol.clone(),
    }
    report = {k: cat[k].tolist() for k in ("remapped", "stretched")}
    return storage, slices, report
