"""The on-disk cache of a molecule file: featurised once, in parallel, then memory-mapped.

A cache is a folder of NumPy ``.npy`` arrays and a ``meta.json``, named after the file and
a hash of its key: the file's content (SHA-256), the featuriser's version
(:data:`regal_torch.data.molecule_graphs.FEATURIZER_VERSION`), RDKit's version, this format's
version and the columns read. Another file content, featuriser or column gives another
folder, so a stale cache is never read. A build writes into a ``.partial-HOST-PID`` folder
and renames it into place once complete (an atomic step), so a killed build never leaves a
cache that looks complete; the next build removes such leftovers of dead processes.

Arrays (``n`` molecules RDKit reads, in file order; ``R`` rows of the file):

=================================  =========  ==============================================
file                               shape      meaning
=================================  =========  ==============================================
``rows``                           ``[n]``    int64, file row of each molecule (from 0)
``atom_offsets``, ``bond_offsets`` ``[n+1]``  int64, where each molecule's atoms/bonds start
``atom_codes``                     ``[V, 7]`` int8, atom column codes (:mod:`.molecule_graphs`)
``bond_codes``                     ``[B, 3]`` int8, bond column codes
``bond_ends``                      ``[B, 2]`` int32, bond atoms, local to the molecule
``places``                         ``[R]``    int64, each row's file line or SDF record
``labels``                         ``[R]``    float64, each row's label (NaN: none)
``smiles_bytes``, ``_offsets``     ``[S]``    UTF-8 SMILES of every row, and ``[R+1]`` offsets
``ids_bytes``, ``ids_offsets``     ``[I]``    ids from the file (absent: ids are ``row<i>``)
=================================  =========  ==============================================

The codes take 7 bytes an atom and 11 a bond (one-hot features would take 144 and 24); items
are one-hot encoded on access (:meth:`MoleculeCache.graph`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import rdkit

from regal_torch.data import molecule_graphs
from regal_torch.data.molecule_build import build_cache
from regal_torch.errors import RegalError
from regal_torch.files import one_builder

__all__ = ["MoleculeCache", "default_cache_dir", "open_cache"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: a SMILES with whitespace inside is unreadable (it was cut)


def default_cache_dir() -> Path:
    """``$REGAL_TORCH_DATA/molecules``, else ``~/.cache/regal_torch/molecules``."""
    base = os.environ.get("REGAL_TORCH_DATA") or Path.home() / ".cache" / "regal_torch"
    return Path(base) / "molecules"


def open_cache(
    path: Path, cache_dir: Path, columns: dict[str, str | None], workers: int
) -> MoleculeCache:
    """The cache of ``path`` read with ``columns``, built first if there is none.

    Args:
        path: The molecule file (:func:`regal_torch.data.molecule_files.molecule_rows`).
        cache_dir: The folder that holds the caches.
        columns: ``smiles_column``, ``target_column`` and ``id_column``.
        workers: Featurising processes (1: this process only).

    Raises:
        RegalError: the file is unreadable or inconsistent (see the readers), or the cache
            folder is damaged.
    """
    content = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            content.update(block)
    digest = content.hexdigest()
    key = {
        "format": CACHE_FORMAT,
        "featurizer": molecule_graphs.FEATURIZER_VERSION,
        "rdkit": rdkit.__version__,
        "sha256": digest,
        **columns,
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir).expanduser() / f"{path.name}-{name}"
    if not folder.is_dir():
        with one_builder(folder):  # the processes of a DDP run: one builds, the others wait
            if not folder.is_dir():
                build_cache(path, folder, key, columns, workers)
    else:
        log.info("%s: reusing the molecule cache %s", path, folder)
    return MoleculeCache(folder)


class MoleculeCache:
    """The memory-mapped arrays of one cache folder (see the module docstring).

    Pickling keeps only the folder; unpickling maps it again (no array is copied).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open()

    def _open(self) -> None:
        try:
            self.meta: dict[str, Any] = json.loads((self.folder / "meta.json").read_text())
            # plain read-only views of the maps: slicing an np.memmap costs Python calls
            self.arrays = {
                p.stem: np.load(p, mmap_mode="r").view(np.ndarray)
                for p in self.folder.glob("*.npy")
            }
            self.rows = np.array(self.arrays["rows"])
        except (OSError, ValueError, KeyError) as exc:
            raise RegalError(
                f"{self.folder}: damaged molecule cache ({exc!r}); delete the folder to rebuild it"
            ) from exc

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder = state["folder"]
        self._open()

    def __len__(self) -> int:
        return len(self.rows)

    def graph(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, edge_index, edge_attr)`` of molecule ``i`` (:func:`molecule_graphs.mol_graph`)."""
        a, b = self.arrays["atom_offsets"], self.arrays["bond_offsets"]
        a0, a1, b0, b1 = int(a[i]), int(a[i + 1]), int(b[i]), int(b[i + 1])
        x = molecule_graphs.atom_codes_to_x(self.arrays["atom_codes"][a0:a1])
        edge_index, edge_attr = molecule_graphs.bond_codes_to_edges(
            self.arrays["bond_ends"][b0:b1], self.arrays["bond_codes"][b0:b1]
        )
        return x, edge_index, edge_attr

    def text(self, name: str, row: int) -> str:
        """The string ``name`` (``smiles`` or ``ids``) of file row ``row``."""
        offsets = self.arrays[f"{name}_offsets"]
        return bytes(self.arrays[f"{name}_bytes"][offsets[row] : offsets[row + 1]]).decode()

    def place(self, row: int) -> str:
        """Where file row ``row`` is: ``line 5`` or ``record 3``."""
        return f"{self.meta['place']} {self.arrays['places'][row]}"

    def smiles_of(self, i: int) -> str:
        return self.text("smiles", int(self.rows[i]))

    def id_of(self, i: int) -> str:
        row = int(self.rows[i])
        return self.text("ids", row) if "ids_offsets" in self.arrays else f"row{row}"

    def place_of(self, i: int) -> str:
        return self.place(int(self.rows[i]))

    def labels(self) -> np.ndarray:
        """Every molecule's label (NaN: none), ``[n]`` float64."""
        return np.asarray(self.arrays["labels"][self.rows])

    def unreadable_rows(self) -> np.ndarray:
        """File rows whose molecule RDKit could not read, ``[k]`` int64."""
        unread = np.ones(len(self.arrays["labels"]), dtype=bool)
        unread[self.rows] = False
        return np.flatnonzero(unread)
