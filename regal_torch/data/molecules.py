"""A user's own molecules from a CSV, SMILES or SDF file, featurised like QM9 into an
on-disk cache (:mod:`regal_torch.data.molecule_cache`) and read from it on access."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data, Dataset

from regal_torch.cores import available_cpus
from regal_torch.data.joined_caches import JoinedCaches, molecule_paths
from regal_torch.data.molecule_cache import MoleculeCache, default_cache_dir, open_cache
from regal_torch.data.molecule_files import file_format, name_places
from regal_torch.engine.jobs import Engine
from regal_torch.engine.local import LocalEngine
from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer
from regal_torch.features.molecule_features import MoleculeFeatures, molecule_features
from regal_torch.features.store import features_folder

__all__ = ["MoleculeDataset", "MoleculeStrings"]

log = logging.getLogger(__name__)


class MoleculeDataset(Dataset):
    """Molecules from a CSV, ``.smi`` or SDF file (each may be gzip-compressed: ``.csv.gz``,
    ``.smi.gz``, ``.sdf.gz``), as heavy-atom graphs.

    Every item has ``x``, ``edge_index``, ``edge_attr`` (:mod:`regal_torch.data.molecule_graphs`:
    any element RDKit reads featurises, those outside the common organic set fall in an
    "other" bucket), ``y`` ``[1, 1]`` (NaN where the file has no label), ``mol_id`` ``[1]``
    (the molecule's row in the file, counting from 0, blank lines not counted), ``smiles``
    and, with ``features``, ``features`` ``[1, F]`` (the molecule features,
    :mod:`regal_torch.features.molecule_features`, cached under ``cache_dir/features``).
    ``ids`` holds the user's id of every molecule (``id_column``, else the SDF title or the
    ``.smi`` name, else ``row<i>``; titles or names that repeat are replaced by ``row<i>`` for
    every molecule, with a warning), ``where`` its place in the file (``line 5``,
    ``record 3``), ``smiles`` its SMILES: read-only sequences (:class:`MoleculeStrings`) that
    make each string on access.

    The file is read streamed and featurised once by ``num_workers`` processes into a cache
    folder under ``cache_dir``, keyed by the file's content and the featuriser's version;
    later loads map that cache, so memory does not grow with the graphs' storage (items are
    built on access). ``y`` ``[N, 1]`` and ``mol_id`` ``[N]`` are held in memory.

    Problems are reported as one :class:`RegalError` line naming the file and the line (the
    header is line 1, blank lines count) or SDF record: missing file or column (with the
    closest column name), a row with more fields than the header (an unquoted decimal comma),
    non-numeric or infinite labels, duplicate ids, no readable molecule. Unparseable
    molecules are skipped with a warning listing them, or refused with ``on_invalid="error"``.
    The same molecule (canonical SMILES) given more than once with different labels is kept,
    with a warning naming the rows.

    Args:
        path: A ``.csv``, ``.smi`` or ``.sdf`` file, or one of these ending in ``.gz``. A
            ``.smi`` file has a SMILES and optionally a name per line, and no labels. Or a
            glob (``shards/*.csv.gz``) or a list of files and globs, read as one pool in
            order, each file cached once (:mod:`regal_torch.data.joined_caches`: ids unique
            across the files, ``FILE:row<i>`` without an id column).
        smiles_column: CSV column holding the SMILES.
        target_column: CSV column or SDF property holding the label, or ``None`` for none.
        id_column: CSV column or SDF property holding a unique id, or ``None``.
        on_invalid: ``"skip"`` or ``"error"`` for molecules RDKit cannot read.
        cache_dir: Folder of the caches; ``None``: :func:`default_cache_dir`
            (``$REGAL_TORCH_DATA/molecules``, else ``~/.cache/regal_torch/molecules``).
        num_workers: Featurising processes; ``None``: every available core; 0 or 1: this
            process only.
        transform: Applied to each item at access.
        features: Names of the molecule features (featurizers of ``featurizers``), e.g.
            ``["minimol", "xtb"]``; None or empty: none.
        featurizers: The featurizers ``features`` may name, by name.
        engine: Where the molecule features are computed (:mod:`regal_torch.engine`); None:
            ``num_workers`` processes of this machine.

    Attributes:
        molecule_features: The :class:`MoleculeFeatures` of ``features``, or None.
    """

    def __init__(
        self,
        path: str,
        smiles_column: str = "smiles",
        target_column: str | None = "target",
        id_column: str | None = None,
        on_invalid: str = "skip",
        cache_dir: str | None = None,
        num_workers: int | None = None,
        transform: Callable[[Data], Data] | None = None,
        features: Sequence[str] | None = None,
        featurizers: Mapping[str, Featurizer] | None = None,
        engine: Engine | None = None,
    ) -> None:
        super().__init__(None, transform)
        if on_invalid not in ("skip", "error"):
            raise RegalError(f"data.on_invalid must be 'skip' or 'error'; got {on_invalid!r}")
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise RegalError(
                f"data.num_workers must be an integer >= 0 or null; got {num_workers!r}"
            )
        self.paths = molecule_paths(path)
        self.path = self.paths[0]  # the file, or the first of several
        for p in self.paths:
            file_format(p)
        columns = {
            "smiles_column": smiles_column,
            "target_column": target_column,
            "id_column": id_column,
        }
        workers = available_cpus() if num_workers is None else max(num_workers, 1)
        base = Path(cache_dir or default_cache_dir())
        caches = [open_cache(p, base, columns, workers) for p in self.paths]
        for p, cache in zip(self.paths, caches, strict=True):
            _report(p, cache, on_invalid)
        self.cache = caches[0] if len(caches) == 1 else JoinedCaches(self.paths, caches)
        self.target_names = [target_column or "target"]
        self.target_units: dict[str, str] = {}
        n = len(self.cache)
        self.y = torch.from_numpy(self.cache.labels()).float().view(-1, 1)
        self.mol_id = torch.from_numpy(self.cache.rows)
        self.smiles = MoleculeStrings(n, self.cache.smiles_of)
        self.ids = MoleculeStrings(n, self.cache.id_of)
        self.where = MoleculeStrings(n, self.cache.place_of)
        self.molecule_features: MoleculeFeatures | None = molecule_features(
            features,
            featurizers,
            self.smiles,
            features_folder(base),
            engine or LocalEngine(num_workers),
        )

    @property
    def feature_names(self) -> list[str]:
        """The molecule features' column names (empty without features)."""
        return [] if self.molecule_features is None else self.molecule_features.names

    def len(self) -> int:
        return len(self.cache)

    def get(self, idx: int) -> Data:
        x, edge_index, edge_attr = self.cache.graph(idx)
        data = Data(
            x=torch.from_numpy(x),
            edge_index=torch.from_numpy(edge_index),
            edge_attr=torch.from_numpy(edge_attr),
            y=self.y[idx].view(1, 1).clone(),
            mol_id=self.mol_id[idx].view(1).clone(),
            smiles=self.cache.smiles_of(idx),
        )
        if self.molecule_features is not None:
            self.molecule_features.ensure([idx])  # loaders ensure theirs at once
            data.features = torch.from_numpy(self.molecule_features.rows([idx]))
        return data


def _report(path: Path, cache: MoleculeCache, on_invalid: str) -> None:
    """Refuse or warn of ``path``'s unreadable rows (``on_invalid``), and its warnings."""
    unread = cache.unreadable_rows()
    if len(unread) and on_invalid == "error":
        first = int(unread[0])
        raise RegalError(
            f"{path}: {cache.place(first)}: cannot read molecule "
            f"{cache.text('smiles', first)!r} (data.on_invalid=skip skips such rows)"
        )
    if len(unread):
        places = [cache.place(int(r)) for r in unread[:20]]
        log.warning(
            "%s: skipped %d unreadable molecules at %s",
            path,
            len(unread),
            name_places(places, len(unread), shown=20),
        )
    for warning in cache.meta["warnings"]:
        log.warning("%s: %s", path, warning)


class MoleculeStrings(Sequence[str]):
    """A read-only sequence of one string per molecule, each made on access.

    Args:
        n: The number of molecules.
        get: The string of molecule ``i``.
    """

    def __init__(self, n: int, get: Callable[[int], str]) -> None:
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # noqa: ANN001, ANN204  (int -> str, slice -> list[str])
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self._n))]
        i = operator.index(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"molecule {i} out of range ({self._n} molecules)")
        return self._get(i % self._n)

    def __repr__(self) -> str:
        shown = ", ".join(repr(s) for s in self[:3])
        return f"MoleculeStrings([{shown}{', ...' if self._n > 3 else ''}], n={self._n})"
