"""Streaming readers of a user's molecule file: CSV, SMILES (``.smi``) or SDF, each optionally
gzip-compressed (``.csv.gz``, ``.smi.gz``, ``.sdf.gz``).

Rows come one at a time, so a file of any size is read in constant memory. Every row is a
tuple ``(place, smiles, label, id, mol)``: the file line on which it starts (CSV, ``.smi``;
the header is line 1, blank lines count) or the SDF record number, the SMILES, the label's
raw text (``""``: none), the molecule's id (``None`` where the file names none) and the parsed
SDF record (``None`` for text formats). Problems are one :class:`RegalError` line naming the
file and the line or record.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase

from regal_torch.errors import RegalError

__all__ = [
    "FORMATS",
    "csv_rows",
    "file_format",
    "molecule_rows",
    "name_places",
    "parse_labels",
    "read_csv_table",
]

FORMATS = ("csv", "smi", "sdf")
Row = tuple[int, str, str, str | None, Chem.Mol | None]


def file_format(path: Path) -> str:
    """``"csv"``, ``"smi"`` or ``"sdf"`` from the file's suffix (a trailing ``.gz`` allowed)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    kind = suffixes[-1][1:] if suffixes else ""
    if kind not in FORMATS:
        raise RegalError(f"{path}: expected a .csv, .smi or .sdf file (each may end in .gz)")
    return kind


def _open(path: Path, text: bool) -> IO:
    """The file for reading, decompressed on the fly if it ends in ``.gz``."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    if text:
        return opener(path, "rt", encoding="utf-8-sig", newline="")
    return opener(path, "rb")


def _unreadable(path: Path, exc: BaseException, place: str) -> RegalError:
    """The error for a file that cannot be decoded, naming where reading stopped (for text
    that is not UTF-8: the first line that is not, found again byte by byte, since the
    decoder reads ahead of the rows)."""
    if isinstance(exc, UnicodeDecodeError):
        place = _first_undecodable_line(path) or place
        return RegalError(f"{path}: {place}: not a readable text file (not UTF-8 text: {exc})")
    return RegalError(f"{path}: {place}: not a readable gzip file ({exc})")


def _first_undecodable_line(path: Path) -> str | None:
    """``line N`` of the first line of ``path`` that is not UTF-8, or None."""
    try:
        with _open(path, text=False) as f:
            for number, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return f"line {number}"
    except _READ_ERRORS + (OSError,):
        return None
    return None


_READ_ERRORS = (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile)


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The header of a CSV file (names made unique), then its rows, each with the file line on
    which it starts (the header is line 1).

    Blank lines are no rows and shift no line number. A row with fewer fields than the header
    gets empty strings for the rest; one with more (non-empty) fields is refused, naming the
    counts: an unquoted decimal comma (``CCO,1,5``) is the usual cause.

    Raises:
        RegalError: the file is not UTF-8 text, not CSV, has no header, or a row has more
            fields than the header.
    """
    header: list[str] | None = None
    line = 0
    try:
        with _open(path, text=True) as f:
            reader = csv.reader(f)
            for fields in reader:
                start, line = line + 1, reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if header is None:
                    header = _unique_names(fields)
                    yield start, header
                    continue
                width = len(header)
                if len(fields) > width and any(v.strip() for v in fields[width:]):
                    raise RegalError(
                        f"{path}: line {start}: {len(fields)} fields, but the header has "
                        f"{width} ({','.join(header)}); quote a field that holds a comma "
                        '(a decimal comma: "1,5"), or write 1.5'
                    )
                yield start, fields if len(fields) == width else (fields + [""] * width)[:width]
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc, f"line {line + 1}") from exc
    except csv.Error as exc:
        raise RegalError(f"{path}: line {line + 1}: not a readable CSV file ({exc})") from exc
    if header is None:
        raise RegalError(f"{path}: not a readable CSV file (no header line)")


def read_header(path: Path) -> list[str] | None:
    """The column names of a CSV file (``.csv``, ``.csv.gz``), None for any other file.

    Raises:
        RegalError: a CSV file that cannot be read (see :func:`csv_rows`).
    """
    if not path.name.lower().removesuffix(".gz").endswith(".csv"):
        return None
    return next(csv_rows(path))[1]


def read_csv_table(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The rows of a (small) CSV file as strings under its header's names, and the file line
    on which each row starts; see :func:`csv_rows`."""
    rows = csv_rows(path)
    _, header = next(rows)
    lines, fields = [], []
    for line, row in rows:
        lines.append(line)
        fields.append(row)
    return pd.DataFrame(fields, columns=header, dtype=str), lines


def molecule_rows(
    path: Path, smiles_column: str, target_column: str | None, id_column: str | None
) -> tuple[str, Iterator[Row]]:
    """The rows of a molecule file, streamed, and the word for their places.

    CSV: ``smiles_column``, ``target_column`` and ``id_column`` name columns. ``.smi``: one
    molecule a line, the SMILES then (after white space) an optional name, no labels; a
    first line starting with ``smiles`` is a header. SDF: the records' structures, properties
    ``target_column`` and ``id_column``; without ``id_column`` the record titles.

    Returns:
        ``("line" or "record", rows)``; a row's id is ``None`` for a CSV file without
        ``id_column``, and a missing SDF title or ``.smi`` name is ``row<i>``.

    Raises:
        RegalError: (while iterating) a named column or property is missing, or the file
            is unreadable.
    """
    kind = file_format(path)
    if kind == "csv":
        return "line", _csv_molecules(path, smiles_column, target_column, id_column)
    if kind == "smi":
        return "line", _smi_molecules(path)
    return "record", _sdf_molecules(path, target_column, id_column)


def _csv_molecules(
    path: Path, smiles_column: str, target_column: str | None, id_column: str | None
) -> Iterator[Row]:
    rows = csv_rows(path)
    _, header = next(rows)
    named = (
        ("data.smiles_column", smiles_column),
        ("data.target_column", target_column),
        ("data.id_column", id_column),
    )
    for key, column in named:
        if column is not None and column not in header:
            raise RegalError(_missing(path, "column", column, key, header))
    s = header.index(smiles_column)
    t = header.index(target_column) if target_column is not None else None
    i = header.index(id_column) if id_column is not None else None
    for line, fields in rows:
        label = fields[t] if t is not None else ""
        yield line, fields[s], label, fields[i] if i is not None else None, None


def _smi_molecules(path: Path) -> Iterator[Row]:
    row = line = 0
    try:
        with _open(path, text=True) as f:
            for line, text in enumerate(f, 1):
                parts = text.split(None, 1)
                if not parts or (row == 0 and parts[0].lower() == "smiles"):
                    continue
                name = parts[1].strip() if len(parts) > 1 else ""
                yield line, parts[0], "", name or f"row{row}", None
                row += 1
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc, f"line {line + 1}") from exc


def _sdf_molecules(path: Path, target_column: str | None, id_column: str | None) -> Iterator[Row]:
    props: set[str] = set()
    record = 0
    _block = rdBase.BlockLogs()  # noqa: F841  (silences RDKit while alive)
    try:
        with _open(path, text=False) as f:
            for record, mol in enumerate(Chem.ForwardSDMolSupplier(f), 1):
                if mol is not None:
                    props.update(mol.GetPropNames())
                smiles = Chem.MolToSmiles(mol) if mol is not None else ""
                ident = _prop(mol, id_column or "_Name") or f"row{record - 1}"
                yield record, smiles, _prop(mol, target_column), ident, mol
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc, f"record {record + 1}") from exc
    for key, column in (("data.target_column", target_column), ("data.id_column", id_column)):
        if record and column is not None and column not in props:
            raise RegalError(_missing(path, "property", column, key, sorted(props)))


def parse_labels(
    path: Path, word: str, places: tuple[int, ...], texts: tuple[str, ...]
) -> np.ndarray:
    """Labels as float64, NaN where the text is empty.

    Raises:
        RegalError: a label is text or infinite, naming the row's line or record.
    """
    raw = pd.Series(texts, dtype=str).str.strip()
    values = pd.to_numeric(raw.where(raw != ""), errors="coerce").to_numpy(dtype=float)
    bad = (raw != "").to_numpy() & ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise RegalError(f"{path}: {word} {places[i]}: label {raw[i]!r} is not a finite number")
    return values


def name_places(places: list[str], total: int | None = None, shown: int = 5) -> str:
    """``line 2, line 5, ...`` for at most ``shown`` places, then how many in all."""
    total = len(places) if total is None else total
    more = f", ... ({total} in all)" if total > shown else ""
    return ", ".join(places[:shown]) + more


def _missing(path: Path, kind: str, name: str, key: str, available: list[str]) -> str:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: no {kind} {name!r} ({key}){hint} Available: {available}"


def _prop(mol: Chem.Mol | None, name: str | None) -> str:
    return mol.GetProp(name) if mol is not None and name and mol.HasProp(name) else ""


def _unique_names(names: list[str]) -> list[str]:
    """Column names with repeats renamed ``name.1``, ``name.2``, ... (as pandas does)."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(f"{name}.{count}" if count else name)
    return unique
