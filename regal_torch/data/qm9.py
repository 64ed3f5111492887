"""QM9 as a PyG ``InMemoryDataset``, built offline from qm9pack's tables.

PyG's own ``QM9`` downloads at first use; this class reads the 130,831 molecules that qm9pack
ships (the same set PyG keeps), keeps PyG's target names, order and units, and caches the
processed graphs under ``root/processed``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.separate import separate
from torch_geometric.io import fs

from regal_torch.data.qm9_build import build_qm9_storage
from regal_torch.data.qm9_tables import (
    QM9_SIZE,
    QM9_TARGETS,
    QM9_UNITS,
    read_qm9_table,
)
from regal_torch.engine.jobs import Engine
from regal_torch.engine.local import LocalEngine
from regal_torch.features.featurizer import Featurizer
from regal_torch.features.molecule_features import MoleculeFeatures, molecule_features
from regal_torch.features.store import features_folder

__all__ = ["QM9Dataset", "subset_positions"]


def subset_positions(n_total: int, n: int, seed: int) -> torch.Tensor:
    """Positions of a reproducible random subset: the first ``n`` of a seeded permutation.

    The same ``(n_total, n, seed)`` always gives the same positions, and a smaller ``n`` gives
    a subset of a larger one (both are prefixes of the same permutation).

    Args:
        n_total: Size of the full set.
        n: Size of the subset, ``1 <= n <= n_total``.
        seed: Seed of the ``torch.Generator`` that draws the permutation.

    Returns:
        Sorted int64 positions in ``[0, n_total)``.

    Shapes:
        ``[n]``.
    """
    if not 1 <= n <= n_total:
        raise ValueError(f"subset size must be between 1 and {n_total}, got {n}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=generator)[:n].sort().values


class QM9Dataset(InMemoryDataset):
    r"""QM9 (130,831 small organic molecules, 19 DFT properties), built offline.

    Each item is a heavy-atom graph (hydrogens implicit) with

    - ``x`` ``[V, ATOM_FEATURE_DIM]`` float32 and ``edge_attr`` ``[E, BOND_FEATURE_DIM]``
      float32: RDKit features of the SMILES (:mod:`regal_torch.data.molecule_graphs`);
    - ``edge_index`` ``[2, E]`` int64, both directions of every bond;
    - ``pos`` ``[V, 3]`` float32 (Angstrom) and ``z`` ``[V]`` int64: the DFT geometry of the
      same heavy atoms, in graph-node order (matched, not assumed: in a few molecules, e.g.
      ``N#CC#CC#N``, the SMILES lists the atoms in another order than the XYZ file);
    - ``y`` ``[1, 19]`` float32, targets below; ``mol_id`` ``[1]`` int64, the QM9 index
      (provenance; active-learning index sets hold dataset positions); ``smiles`` (str);
    - with ``features``, ``features`` ``[1, F]`` float32: the molecule features
      (:mod:`regal_torch.features.molecule_features`), computed from the SMILES (and, for
      xTB, RDKit's geometry, never the DFT one) once per molecule and cached under
      ``root/features``.

    ====  ========  ==============================================  ===========
    idx   name      property                                        unit
    ====  ========  ==============================================  ===========
    0     mu        dipole moment                                   D
    1     alpha     isotropic polarizability                        bohr^3
    2     homo      HOMO energy                                     eV
    3     lumo      LUMO energy                                     eV
    4     gap       HOMO-LUMO gap                                   eV
    5     r2        electronic spatial extent                       bohr^2
    6     zpve      zero-point vibrational energy                   eV
    7     U0        internal energy at 0 K                          eV
    8     U         internal energy at 298.15 K                     eV
    9     H         enthalpy at 298.15 K                            eV
    10    G         free energy at 298.15 K                         eV
    11    cv        heat capacity at 298.15 K                       cal/(mol K)
    12    U0_atom   atomization energy at 0 K (U0 - atom refs)      eV
    13    U_atom    atomization energy at 298.15 K                  eV
    14    H_atom    atomization enthalpy at 298.15 K                eV
    15    G_atom    atomization free energy at 298.15 K             eV
    16    A         rotational constant                             GHz
    17    B         rotational constant                             GHz
    18    C         rotational constant                             GHz
    ====  ========  ==============================================  ===========

    Energies are converted from hartree with ``HAR2EV = 27.211386246``; the ``*_atom``
    targets subtract the isolated-atom energies :data:`QM9_ATOM_REFS_EV` (H, C, N, O, F), as
    PyG does (methane: ``gap`` 13.736 eV, ``U0_atom`` -17.172 eV).

    The first instantiation builds the cache (all cores; about 10 s for the full set on two
    cores); later ones load it. Only the selected molecules are featurised.

    Args:
        root: Folder of the cache (``root/processed/<name>.pt``).
        subset: Number of molecules of a reproducible random subset (see
            :func:`subset_positions`; sorted by QM9 index), or ``None`` for all.
        subset_seed: Seed of the subset's permutation.
        transform: Applied to each item at access.
        pre_transform: Applied to each item before caching.
        log: Print a line when a build starts and ends.
        only_indices: A subset filter, for tests and small studies: exactly the molecules
            of these QM9 indices (sorted), instead of ``subset``; cached as
            ``qm9_ids<count>_<hash>.pt``. (An item's ``mol_id`` is provenance: its QM9 index.)
        force_reload: Rebuild even if the cache exists.
        features: Names of the molecule features (featurizers of ``featurizers``), e.g.
            ``["minimol", "xtb"]``; None or empty: none.
        featurizers: The featurizers ``features`` may name, by name
            (``configs/data/featurizers/default.yaml``).
        num_workers: Processes that compute the features without ``engine``; None: every
            available core.
        engine: Where the molecule features are computed (:mod:`regal_torch.engine`); None:
            ``num_workers`` processes of this machine.

    Attributes:
        target_names: :data:`QM9_TARGETS`, the names of ``y``'s columns.
        target_units: :data:`QM9_UNITS`, the unit of each target by name.
        build_info: After a build in this instantiation, a dict with ``seconds``,
            ``molecules``, ``remapped`` (QM9 indices whose atom order needed a non-identity
            mapping) and ``stretched``; ``None`` when the cache was only loaded.
        molecule_features: The :class:`MoleculeFeatures` of ``features``, or None.
    """

    def __init__(
        self,
        root: str,
        subset: int | None = None,
        subset_seed: int = 0,
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        log: bool = True,
        only_indices: Sequence[int] | None = None,
        force_reload: bool = False,
        features: Sequence[str] | None = None,
        featurizers: Mapping[str, Featurizer] | None = None,
        num_workers: int | None = None,
        engine: Engine | None = None,
    ) -> None:
        if subset is not None and only_indices is not None:
            raise ValueError("QM9Dataset: give either subset or only_indices, not both")
        if subset is not None and not 1 <= subset <= QM9_SIZE:
            raise ValueError(f"QM9Dataset: subset must be in [1, {QM9_SIZE}], got {subset}")
        self.subset = subset
        self.subset_seed = int(subset_seed)
        self.only_indices = None if only_indices is None else sorted({int(i) for i in only_indices})
        if self.only_indices is not None and not self.only_indices:
            raise ValueError("QM9Dataset: only_indices is empty")
        self.target_names: tuple[str, ...] = QM9_TARGETS
        self.target_units: dict[str, str] = QM9_UNITS
        self.ids = self.where = None  # an item's id is its QM9 index (mol_id)
        self.build_info: dict | None = None
        super().__init__(root, transform, pre_transform, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0])
        self.molecule_features: MoleculeFeatures | None = molecule_features(
            features,
            featurizers,
            self._data.smiles,
            features_folder(root),
            engine or LocalEngine(num_workers),
        )

    @property
    def feature_names(self) -> list[str]:
        """The molecule features' column names (empty without features)."""
        return [] if self.molecule_features is None else self.molecule_features.names

    def get(self, idx: int) -> Data:
        data = super().get(idx)
        if self.molecule_features is not None:
            self.molecule_features.ensure([idx])  # loaders ensure theirs at once
            data.features = torch.from_numpy(self.molecule_features.rows([idx]))
        return data

    @property
    def raw_file_names(self) -> list[str]:
        return []  # everything comes from the installed qm9pack package

    @property
    def processed_file_names(self) -> str:
        if self.only_indices is not None:
            digest = hashlib.sha1(",".join(map(str, self.only_indices)).encode()).hexdigest()[:10]
            return f"qm9_ids{len(self.only_indices)}_{digest}.pt"
        if self.subset is None:
            return "qm9_full.pt"
        return f"qm9_sub{self.subset}_seed{self.subset_seed}.pt"

    def download(self) -> None:
        """Nothing to download (overridden so that PyG never reaches for the internet)."""

    def _rows(self, index: np.ndarray) -> np.ndarray | None:
        """Table rows of the selected molecules (``None``: all), given the QM9 indices."""
        if self.only_indices is not None:
            ids = np.asarray(self.only_indices, dtype=np.int64)
            rows = np.clip(np.searchsorted(index, ids), 0, len(index) - 1)
            missing = ids[index[rows] != ids]
            if len(missing):
                raise ValueError(f"QM9Dataset: no QM9 molecule with index {missing.tolist()}")
            return rows
        if self.subset is not None:
            return subset_positions(len(index), self.subset, self.subset_seed).numpy()
        return None

    def _say(self, message: str) -> None:
        if self.log:
            print(message, file=sys.stderr, flush=True)

    def process(self) -> None:
        """Builds the cache from qm9pack's tables (all available cores)."""
        start = time.perf_counter()
        path = self.processed_paths[0]
        table = read_qm9_table()
        rows = self._rows(table["Index"].to_numpy())
        if rows is not None:
            table = table.iloc[rows].reset_index(drop=True)
        self._say(f"QM9: building {len(table):,} molecules -> {path}")
        storage, slices, report = build_qm9_storage(table)
        if self.pre_transform is None:
            out = (storage, slices, Data)
        else:
            data = Data.from_dict(storage)
            items = [
                self.pre_transform(separate(Data, data, i, slices, decrement=False))
                for i in range(len(table))
            ]
            collated, slices = self.collate(items)
            out = (collated.to_dict(), slices, collated.__class__)
        tmp = f"{path}.tmp{os.getpid()}"
        fs.torch_save(out, tmp)
        os.replace(tmp, path)  # a crash never leaves a half-written cache behind
        seconds = time.perf_counter() - start
        self.build_info = {"seconds": seconds, "molecules": len(table), **report}
        self._say(
            f"QM9: built {len(table):,} molecules in {seconds:.1f} s "
            f"({len(report['remapped'])} needed a non-identity atom mapping)"
        )
