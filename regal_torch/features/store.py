"""The on-disk store of one featurizer's values, one entry per molecule, shared by every data set.

A store is a folder ``NAME-KEY`` under the features folder (:func:`features_folder`), keyed by
the featurizer's name and version, the versions of the packages it names
(:meth:`regal_torch.features.featurizer.Featurizer.packages`) and this format's version:
another featurizer or package version gives another folder, so a stale value is never read.
Every data set, subset, run and ``regal_torch.predict`` that uses the featurizer reads and
adds to the same store; a molecule is computed once, whichever list it came in.

A molecule's key is the first 16 bytes of the BLAKE2b hash of its canonical SMILES (RDKit;
the SMILES as given where RDKit cannot read it): the same molecule written two ways is one
entry. The values live in ``parts/``, a folder of immutable Arrow IPC files (one per
computed chunk of molecules) with the columns

=============  ==============================  ==============================================
column         type                            meaning
=============  ==============================  ==============================================
``key``        ``fixed_size_binary(16)``       the molecule's key
``values``     ``fixed_size_list<float32>[C]`` every column the featurizer computes (NaN: failed)
``failure``    ``utf8`` (null: none)           why the featurizer failed on it
=============  ==============================  ==============================================

Why this format: a part is written to a temporary file and renamed into place, so any number
of processes, on one machine or on several sharing a file system, add parts at once without a
lock or a server and a reader never sees half a part (LMDB and SQLite need working file locks,
which network file systems often lack, and serialise their writers); a part is memory-mapped,
its values read without a copy; pyarrow is already needed for the Parquet prediction tables.
The index (the sorted keys of every part, built when the store is opened and brought up to
date before each lookup) costs 16 bytes a molecule. Two processes of one host that need the
same molecules at once compute them once (a per-host lock, :func:`regal_torch.files.one_builder`);
hosts that race compute a molecule twice at worst, and the first part found wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from regal_torch.engine.jobs import Engine
from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer
from regal_torch.features.progress import Progress, say
from regal_torch.files import atomic_write_bytes, one_builder, remove_temporaries

__all__ = ["CHUNK", "FeatureStore", "features_folder", "molecule_keys"]

STORE_FORMAT = 2  # 2: one entry per molecule (1: one array per list of molecules)
CHUNK = 1000  # molecules per task and per part at most: what a killed computation loses
KEY_BYTES = 16


def features_folder(cache: Path) -> Path:
    """The features folder beside a data cache folder (``data.cache_dir``, QM9's
    ``data.dataset.root``): ``cache/../features``, shared by every data set whose cache
    folders lie side by side (the default ones do)."""
    return Path(cache).expanduser().absolute().parent / "features"


def molecule_keys(smiles: Sequence[str]) -> np.ndarray:
    """Each molecule's key (see the module docstring), ``[n]`` ``S16``."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    keys = np.empty(len(smiles), dtype=f"S{KEY_BYTES}")
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        text = Chem.MolToSmiles(mol) if mol is not None else f"as given:{s}"
        keys[i] = hashlib.blake2b(text.encode(), digest_size=KEY_BYTES).digest()
    return keys


def canonical_smiles(smiles: str) -> str:
    """What a store computes a molecule from: its canonical SMILES (as given if unreadable)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else smiles


class FeatureStore:
    """One featurizer's store under ``folder`` (see the module docstring), created if needed.

    Pickling keeps the featurizer and the folder; unpickling opens the store again.

    Shapes:
        :meth:`locate`: keys ``[k]`` S16 -> entries ``[k]`` int64 (-1: not in the store).
        :meth:`values`: entries ``[k]`` -> ``[k, C]`` float32 (NaN where it failed).

    Raises:
        RegalError: the featurizer's package is missing, or the folder is not writable.
    """

    def __init__(self, featurizer: Featurizer, folder: Path) -> None:
        self.featurizer = featurizer
        key = {
            "format": STORE_FORMAT,
            "featurizer": featurizer.name,
            "version": featurizer.version,
            "packages": featurizer.packages(),
        }
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(folder).expanduser() / f"{featurizer.name}-{name}"
        try:
            (self.folder / "parts").mkdir(parents=True, exist_ok=True)
            if not (self.folder / "key.json").is_file():
                atomic_write_bytes(self.folder / "key.json", json.dumps(key, indent=1).encode())
            remove_temporaries(self.folder / "parts")  # what killed writers left
        except (OSError, RegalError) as exc:
            raise RegalError(
                f"{self.folder.parent}: cannot write the {featurizer.name} feature store "
                f"({exc}); set data.cache_dir (molecules) or data.dataset.root (QM9) to a "
                "writable folder"
            ) from exc
        self._reset()

    def _reset(self, parts: Sequence[str] = ()) -> None:
        """Open the store anew: the ``parts`` first, in this order (entries are numbered in
        the order parts are opened), then every other."""
        self._parts: list[str] = []
        self._values: list[np.ndarray] = []
        self._failures: list[pa.Array] = []
        self._failed: list[np.ndarray] = []
        self._keys = np.empty(0, dtype=f"S{KEY_BYTES}")
        self._entries = np.empty(0, dtype=np.int64)  # sorted position -> entry
        self._starts = np.zeros(1, dtype=np.int64)  # part -> its first entry
        self.refresh(parts)

    def __getstate__(self) -> dict:
        return {"featurizer": self.featurizer, "folder": self.folder, "parts": self._parts}

    def __setstate__(self, state: dict) -> None:
        self.featurizer, self.folder = state["featurizer"], state["folder"]
        self._reset(state["parts"])  # the same entries as the pickled store's

    def __len__(self) -> int:
        return len(self._keys)

    def refresh(self, first: Sequence[str] = ()) -> None:
        """Take in the parts other processes added since the store was opened (``first``
        before the others)."""
        names = sorted(p.name for p in (self.folder / "parts").glob("part-*.arrow"))
        known = set(self._parts)
        new = [n for n in [*first, *names] if n not in known]
        new = list(dict.fromkeys(new))
        if not new:
            return
        keys = [self._keys]
        for name in new:
            try:
                table = pa.ipc.open_file(
                    pa.memory_map(str(self.folder / "parts" / name))
                ).read_all()
                key = table.column("key").combine_chunks()
                values = table.column("values").combine_chunks()
                width = values.type.list_size
                block = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
            except (OSError, pa.ArrowException, KeyError) as exc:
                raise RegalError(
                    f"{self.folder / 'parts' / name}: damaged feature part ({exc}); delete it "
                    "(its molecules are computed again)"
                ) from exc
            keys.append(
                np.frombuffer(key.buffers()[1], dtype=f"S{KEY_BYTES}", count=len(key),
                              offset=key.offset * KEY_BYTES)
            )  # fmt: skip
            self._parts.append(name)
            self._values.append(block)
            failure = table.column("failure").combine_chunks()
            self._failures.append(failure)
            self._failed.append(failure.is_valid().to_numpy(zero_copy_only=False))
        self._keys = np.concatenate(keys)
        self._starts = np.cumsum([0, *(len(v) for v in self._values)])
        self._entries = np.argsort(self._keys, kind="stable")

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """The entry of each key, the first one where several parts hold it; -1 if none."""
        if len(self._keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        ordered = self._keys[self._entries]
        at = np.searchsorted(ordered, keys).clip(max=len(ordered) - 1)
        found = ordered[at] == keys
        return np.where(found, self._entries[at], -1)

    def _part_rows(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        part = np.searchsorted(self._starts, entries, side="right") - 1
        return part, entries - self._starts[part]

    def values(self, entries: np.ndarray) -> np.ndarray:
        """The values of ``entries`` (all >= 0), every column the featurizer computes."""
        out = np.empty((len(entries), len(self.featurizer.columns)), dtype=np.float32)
        part, row = self._part_rows(np.asarray(entries, dtype=np.int64))
        for p in np.unique(part):
            mask = part == p
            out[mask] = self._values[p][row[mask]]
        return out

    def failed(self, entries: np.ndarray) -> np.ndarray:
        """Whether the featurizer failed on each of ``entries`` (all >= 0), ``[k]`` bool."""
        out = np.zeros(len(entries), dtype=bool)
        part, row = self._part_rows(np.asarray(entries, dtype=np.int64))
        for p in np.unique(part):
            mask = part == p
            out[mask] = self._failed[p][row[mask]]
        return out

    def failures(self, entries: np.ndarray) -> list[str | None]:
        """Why the featurizer failed on each of ``entries`` (None where it did not)."""
        part, row = self._part_rows(np.asarray(entries, dtype=np.int64))
        return [self._failures[p][r].as_py() for p, r in zip(part, row, strict=True)]

    def add(
        self, keys: np.ndarray, smiles: Sequence[str], engine: Engine, asked: int | None = None
    ) -> int:
        """Compute the molecules ``smiles`` (their ``keys``) that the store does not hold yet,
        on ``engine`` (:mod:`regal_torch.engine`), one part per job of at most :data:`CHUNK`
        molecules (fewer where that keeps every slot of the engine busy); returns how many it
        computed (``asked``: how many molecules the step reads, for the progress line).

        A computation that is killed keeps every part it finished. Processes of this host
        that add at the same time wait for each other, so each molecule is computed once.
        """
        with one_builder(self.folder / f"compute-{socket.gethostname()}"):
            self.refresh()
            missing = np.flatnonzero(self.locate(keys) < 0)
            _, first = np.unique(keys[missing], return_index=True)
            todo = missing[np.sort(first)]
            if len(todo) == 0:
                return 0
            self._compute(keys[todo], [smiles[i] for i in todo], engine, asked or len(keys))
            self.refresh()
        return len(todo)

    def _compute(self, keys: np.ndarray, smiles: list[str], engine: Engine, asked: int) -> None:
        name, n = self.featurizer.name, len(keys)
        size = min(CHUNK, -(-n // engine.slots()))  # fewer molecules than CHUNK per slot: split
        chunks = [range(first, min(first + size, n)) for first in range(0, n, size)]
        say(
            f"features {name}: computing {n:,} of {asked:,} molecules (the others are in the "
            f"store) {engine.describe(len(chunks))} -> {self.folder}"
        )
        start = time.perf_counter()
        progress = Progress(name, n, 0)
        jobs = ((c, [canonical_smiles(smiles[i]) for i in rows]) for c, rows in enumerate(chunks))
        failed = 0
        with engine.features(self.featurizer, jobs, len(chunks)) as results:
            for c, values, reasons in results:
                self._write_part(keys[chunks[c].start : chunks[c].stop], values, reasons)
                failed += sum(r is not None for r in reasons)
                progress.update(len(reasons))
        progress.close()
        say(
            f"features {name}: {n:,} molecules in {time.perf_counter() - start:.1f} s"
            + (f", {failed:,} failed" if failed else "")
        )

    def _write_part(self, keys: np.ndarray, values: np.ndarray, reasons: list[str | None]) -> None:
        width = len(self.featurizer.columns)
        flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
        key_type = pa.binary(KEY_BYTES)
        raw = pa.py_buffer(np.ascontiguousarray(keys, dtype=f"S{KEY_BYTES}").tobytes())
        table = pa.table({
            # from the raw bytes: a NumPy bytes scalar drops a key's trailing zero bytes
            "key": pa.FixedSizeBinaryArray.from_buffers(key_type, len(keys), [None, raw]),
            "values": pa.FixedSizeListArray.from_arrays(flat, width),
            "failure": pa.array(reasons, type=pa.string()),
        })  # fmt: skip
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        name = f"part-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(8)}.arrow"
        atomic_write_bytes(self.folder / "parts" / name, sink.getvalue().to_pybytes())
