"""A library in several files read as one pool: ``data.path`` a glob or a list of files.

:func:`molecule_paths` expands ``data.path`` (a file, a glob such as ``shards/*.csv.gz``, or a
list of either) into the files, in order. :class:`JoinedCaches` reads the caches of several
files (one :class:`~regal_torch.data.molecule_cache.MoleculeCache` per file, each built once)
as one: molecule ``i`` of the pool is molecule ``i - start[f]`` of file ``f``. Ids are unique
across the files: a file's own ids (``data.id_column``) must not repeat in another file, and
without them a molecule's id is ``FILE:row<i>`` (the file's name, then its row).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from regal_torch.data.molecule_cache import MoleculeCache
from regal_torch.errors import RegalError

__all__ = ["JoinedCaches", "molecule_paths"]

_GLOB = set("*?[")


def molecule_paths(path: str | Sequence[str]) -> list[Path]:
    """The files of ``data.path``: a file, a glob (sorted matches) or a list of these.

    Raises:
        RegalError: a glob that matches no file, a folder, a missing file, an empty list, a
            file named twice.
    """
    given = [path] if isinstance(path, (str, Path)) else list(path)
    if not given:
        raise RegalError("data.path=[]: name at least one file")
    paths: list[Path] = []
    for entry in map(str, given):
        if _GLOB & set(entry):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise RegalError(f"data.path={entry}: no file matches")
            paths += [Path(m) for m in matches if not Path(m).is_dir()]
            continue
        paths.append(Path(entry))
    for p in paths:
        if p.is_dir():
            raise RegalError(f"{p}: a folder, not a file (data.path)")
        if not p.is_file():
            raise RegalError(f"{p}: no such file (data.path)")
    resolved = [p.resolve() for p in paths]
    twice = next((p for i, p in enumerate(resolved) if p in resolved[:i]), None)
    if twice is not None:
        raise RegalError(f"{twice}: named twice in data.path")
    return paths


class JoinedCaches:
    """The caches of ``paths``, in order, read as one (the calls of a
    :class:`~regal_torch.data.molecule_cache.MoleculeCache` a dataset makes).

    Raises:
        RegalError: an id of one file that another file has too.
    """

    def __init__(self, paths: Sequence[Path], caches: Sequence[MoleculeCache]) -> None:
        self.paths, self.caches = list(paths), list(caches)
        self.starts = np.cumsum([0, *(len(c) for c in self.caches)])
        self.rows = np.concatenate([c.rows for c in self.caches])
        self.names = [p.name for p in self.paths]
        if len(set(self.names)) < len(self.names):  # shards of the same name in other folders
            self.names = [str(p) for p in self.paths]
        self._check_ids()

    def _check_ids(self) -> None:
        seen: dict[str, int] = {}
        for f, cache in enumerate(self.caches):
            if "ids_offsets" not in cache.arrays:
                continue  # FILE:row<i> ids, unique by their file's name
            for i in range(len(cache)):
                name = cache.id_of(i)
                if name in seen and seen[name] != f:
                    raise RegalError(
                        f"data.path: id {name!r} is in {self.paths[seen[name]]} and in "
                        f"{self.paths[f]} ({cache.place_of(i)}); ids must be unique across "
                        "the files"
                    )
                seen[name] = f

    def _where(self, i: int) -> tuple[int, int]:
        f = int(np.searchsorted(self.starts, i, side="right") - 1)
        return f, i - int(self.starts[f])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def graph(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, j = self._where(i)
        return self.caches[f].graph(j)

    def smiles_of(self, i: int) -> str:
        f, j = self._where(i)
        return self.caches[f].smiles_of(j)

    def id_of(self, i: int) -> str:
        f, j = self._where(i)
        cache = self.caches[f]
        own = "ids_offsets" in cache.arrays
        return cache.id_of(j) if own else f"{self.names[f]}:{cache.id_of(j)}"

    def place_of(self, i: int) -> str:
        f, j = self._where(i)
        return f"{self.names[f]} {self.caches[f].place_of(j)}"

    def labels(self) -> np.ndarray:
        """Every molecule's label (NaN: none), ``[n]`` float64."""
        return np.concatenate([c.labels() for c in self.caches])
