"""Building a molecule file's on-disk cache (:mod:`regal_torch.data.molecule_cache`).

The parent process streams the file's rows in chunks and writes each row's place, label and
strings; worker processes featurise the chunks' SMILES (:func:`featurize_smiles_batch`), at
most two chunks a worker ahead, and the parent appends their codes in file order. Every array
grows as a raw file and becomes a ``.npy`` file at the end, so memory stays flat however
large the file. Then come the checks that need every row (repeated ids, molecules given with
different labels), and the folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from regal_torch.data import molecule_graphs
from regal_torch.data.molecule_files import (
    Row,
    file_format,
    molecule_rows,
    name_places,
    parse_labels,
)
from regal_torch.errors import RegalError
from regal_torch.files import partial_folder, publish, write_synced

__all__ = ["build_cache"]

log = logging.getLogger(__name__)

_FIRST_CHUNK, _LARGEST_CHUNK = 256, 8192  # rows per task: small first (all workers start
# at once), doubling up to a size that keeps the parent's share of the work small


def build_cache(
    path: Path, folder: Path, key: dict[str, Any], columns: dict[str, str | None], workers: int
) -> None:
    """Featurises ``path`` into ``folder``, atomically (:mod:`.molecule_cache` says how)."""
    start = time.perf_counter()
    word, rows = molecule_rows(path, **columns)
    try:
        partial = partial_folder(folder)
    except OSError as exc:
        raise RegalError(
            f"{folder.parent}: cannot write the molecule cache ({exc}); set data.cache_dir "
            "to a writable folder"
        ) from exc
    log.info("%s: featurising into %s with %d processes", path, folder, workers)
    try:
        writer = _Writer(partial)
        _featurize_rows(path, word, rows, writer, workers, sdf=file_format(path) == "sdf")
        writer.save()
        meta = {"key": key, "place": word, "warnings": _check(path, word, partial, columns)}
        meta["seconds"] = round(time.perf_counter() - start, 2)
        write_synced(partial / "meta.json", json.dumps(meta, indent=1).encode())
        publish(partial, folder, "meta.json")  # or another process built it meanwhile
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("%s: featurised in %.1f s", path, time.perf_counter() - start)


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """The rows in lists of ``_FIRST_CHUNK`` rows, doubling up to ``_LARGEST_CHUNK``."""
    rows = iter(rows)
    size = _FIRST_CHUNK
    while chunk := list(itertools.islice(rows, size)):
        yield chunk
        size = min(2 * size, _LARGEST_CHUNK)


def _featurize_rows(
    path: Path, word: str, rows: Iterator[Row], writer: _Writer, workers: int, sdf: bool
) -> None:
    """Writes every row's place, label and strings, and every readable molecule's codes.

    Text rows are featurised by ``workers`` processes when there is more than one chunk;
    SDF records arrive parsed and are featurised here.
    """
    chunks = _chunks(rows)
    head = list(itertools.islice(chunks, 2))
    parallel = (
        workers > 1 and len(head) > 1 and not sdf and not multiprocessing.current_process().daemon
    )
    # fork: workers inherit the imported modules and only touch numpy and RDKit.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(workers, context) if parallel else contextlib.nullcontext()
    pending: deque[tuple[int, int, Future | dict[str, np.ndarray]]] = deque()
    first_row = 0
    with pool as executor:
        for chunk in itertools.chain(head, chunks):
            places, smiles, texts, ids, mols = zip(*chunk, strict=True)
            labels = parse_labels(path, word, places, texts)
            writer.append("places", np.asarray(places, dtype=np.int64))
            writer.append("labels", labels)
            writer.append_strings("smiles", smiles)
            if ids[0] is not None:
                writer.append_strings("ids", ids)
            labeled = np.isfinite(labels)
            if sdf:
                job = molecule_graphs.featurize_mols(mols, len(mols), labeled)
            elif executor is not None:
                job = executor.submit(molecule_graphs.featurize_smiles_batch, smiles, True, labeled)
            else:
                job = molecule_graphs.featurize_smiles_batch(smiles, True, labeled)
            pending.append((first_row, len(chunk), job))
            first_row += len(chunk)
            while len(pending) > 2 * workers or (executor is None and pending):
                _write_codes(writer, *pending.popleft())
        while pending:
            _write_codes(writer, *pending.popleft())


def _write_codes(
    writer: _Writer, first_row: int, n: int, job: Future | dict[str, np.ndarray]
) -> None:
    out = job.result() if isinstance(job, Future) else job
    readable = np.ones(n, dtype=bool)
    readable[out["invalid"]] = False
    writer.append("rows", first_row + np.flatnonzero(readable))
    writer.append_offsets("atom_offsets", out["num_atoms"])
    writer.append_offsets("bond_offsets", out["num_bonds"])
    writer.append("atom_codes", out["atom_codes"])
    writer.append("bond_codes", out["bond_codes"])
    writer.append("bond_ends", out["ends"])
    writer.append("canonical", out["canonical"])


def _check(path: Path, word: str, folder: Path, columns: dict[str, str | None]) -> list[str]:
    """Refuses repeated declared ids and a file without a readable molecule; returns the
    warnings to give at every load (without the file's name). Removes ``canonical.npy``
    and, where the file's titles repeat, the ids (they become ``row<i>``)."""
    if not (folder / "rows.npy").is_file():  # the file has no row
        raise RegalError(f"{path}: no readable molecule")
    load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
    places = load("places")
    warnings = []
    if (folder / "ids_offsets.npy").is_file():
        data, offsets = load("ids_bytes"), load("ids_offsets")
        empty = np.flatnonzero(np.diff(offsets) == 0)
        if len(empty) and columns["id_column"] is not None:
            where = name_places([f"{word} {places[r]}" for r in empty[:5]], len(empty))
            raise RegalError(f"{path}: empty id (data.id_column) at {where}")
        repeated = _repeated(data, offsets)
        if repeated is not None:
            r = repeated[0]
            first = bytes(data[offsets[r] : offsets[r + 1]]).decode()
            where = name_places([f"{word} {places[r]}" for r in repeated[:5]], len(repeated))
            if columns["id_column"] is not None:
                raise RegalError(f"{path}: duplicate id {first!r} at {where}")
            what = "record titles" if word == "record" else "names after the SMILES"
            hint = "; data.id_column=PROPERTY names a property of unique ids"
            warnings.append(
                f"{what} are not unique ({first!r} at {where}); using row numbers as ids "
                f"(row0 = the first {word}, ...){hint if word == 'record' else ''}"
            )
            del data, offsets
            for name in ("ids_bytes", "ids_offsets"):
                (folder / f"{name}.npy").unlink()
    rows = load("rows")
    if len(rows) == 0:
        raise RegalError(f"{path}: no readable molecule")
    conflicts = _label_conflicts(word, rows, places, load("labels"), load("canonical"))
    (folder / "canonical.npy").unlink()
    return warnings + conflicts


def _repeated(data: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """The rows holding the first repeated string (in file order), or None if none repeats.

    Vectorised: the strings become rows of one fixed-width byte array, sorted by numpy.
    """
    lengths = np.diff(offsets)
    n = len(lengths)
    width = max(int(lengths.max()), 1)
    table = np.zeros((n, width), dtype=np.uint8)
    owner = np.repeat(np.arange(n), lengths)
    table[owner, np.arange(len(data)) - offsets[owner]] = data
    _, inverse, counts = np.unique(
        table.view(f"S{width}").ravel(), return_inverse=True, return_counts=True
    )
    repeated = counts[inverse] > 1
    if not repeated.any():
        return None
    return np.flatnonzero(inverse == inverse[np.argmax(repeated)])


def _label_conflicts(
    word: str, rows: np.ndarray, places: np.ndarray, labels: np.ndarray, canonical: np.ndarray
) -> list[str]:
    """A warning naming the rows of molecules (same canonical SMILES) given more than once
    with different labels, or none."""
    values = np.asarray(labels[rows])
    keep = np.isfinite(values)
    if not keep.any():
        return []
    h, r, v = canonical[keep], np.asarray(rows)[keep], values[keep]
    order = np.lexsort((r, h))
    h, r, v = h[order], r[order], v[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    ends = np.r_[starts[1:], len(h)]
    differ = np.minimum.reduceat(v, starts) != np.maximum.reduceat(v, starts)
    groups = np.flatnonzero(differ)
    if not len(groups):
        return []
    groups = groups[np.argsort(r[starts[groups]])]  # by their first row in the file
    shown = "; ".join(
        name_places([f"{word} {places[x]} ({labels[x]:g})" for x in r[starts[g] : ends[g]]])
        for g in groups[:3]
    )
    more = f"; and {len(groups) - 3} more molecules" if len(groups) > 3 else ""
    return [f"the same molecule with different labels (every row is kept): {shown}{more}"]


class _Writer:
    """Appends arrays to raw files in a folder; :meth:`save` makes each a ``.npy`` file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, Any] = {}
        self.layout: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
        self.totals: dict[str, int] = {}

    def append(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if name not in self.files:
            self.files[name] = open(self.folder / f"{name}.raw", "wb")  # noqa: SIM115
            self.layout[name] = (array.dtype, array.shape[1:], 0)
        self.files[name].write(array.data)
        dtype, shape, count = self.layout[name]
        self.layout[name] = (dtype, shape, count + len(array))

    def append_offsets(self, name: str, counts: np.ndarray) -> None:
        """Appends the running offsets of items of ``counts`` sizes (a 0 first)."""
        total = self.totals.get(name)
        if total is None:
            self.append(name, np.zeros(1, dtype=np.int64))
            total = 0
        ends = total + np.cumsum(counts, dtype=np.int64)
        self.append(name, ends)
        self.totals[name] = int(ends[-1]) if len(ends) else total

    def append_strings(self, name: str, texts: Iterable[str]) -> None:
        """Appends UTF-8 ``texts`` to ``NAME_bytes`` and their ends to ``NAME_offsets``."""
        encoded = [t.encode() for t in texts]
        self.append(f"{name}_bytes", np.frombuffer(b"".join(encoded), dtype=np.uint8))
        self.append_offsets(f"{name}_offsets", np.fromiter(map(len, encoded), np.int64))

    def save(self) -> None:
        """Writes ``NAME.npy`` (a header, then the raw data) for every array, synced."""
        for name, f in self.files.items():
            f.close()
            dtype, shape, count = self.layout[name]
            raw = self.folder / f"{name}.raw"
            with open(raw, "rb") as src, open(self.folder / f"{name}.npy", "wb") as dst:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                np.lib.format.write_array_header_1_0(dst, {**header, "shape": (count, *shape)})
                shutil.copyfileobj(src, dst, 1 << 24)
                dst.flush()
                os.fsync(dst.fileno())
            raw.unlink()
