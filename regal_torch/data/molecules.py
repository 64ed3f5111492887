"""A user's own molecules from a CSV or SDF file, featurised like QM9."""

from __future__ import annotations

import csv
import difflib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, rdBase
from torch_geometric.data import Data, InMemoryDataset

from regal_torch.data.featurize import mol_graph, parse_smiles
from regal_torch.errors import RegalError

log = logging.getLogger(__name__)


class MoleculeDataset(InMemoryDataset):
    """Molecules from a CSV (a SMILES column) or an SDF file, as heavy-atom graphs.

    Every item has ``x``, ``edge_index``, ``edge_attr`` (:mod:`regal_torch.data.featurize`:
    any element RDKit reads featurises, those outside the common organic set fall in an
    "other" bucket), ``y`` ``[1, 1]`` (NaN where the file has no label), ``mol_id`` ``[1]``
    (the molecule's row in the file, counting from 0, blank lines not counted) and ``smiles``.
    ``ids`` holds the user's id of every molecule (``id_column``, else the SDF title, else
    ``row<i>``; SDF titles that repeat are replaced by ``row<i>`` for every record, with a
    warning), ``where`` its place in the file (``line 5``, ``record 3``).

    Problems are reported as one :class:`RegalError` line naming the file and the CSV line
    (the header is line 1, blank lines count) or SDF record: missing file or column (with the
    closest column name), a row with more fields than the header (an unquoted decimal comma),
    non-numeric or infinite labels, duplicate ids, no readable molecule. Unparseable
    molecules are skipped with a warning listing them, or refused with ``on_invalid="error"``.
    The same molecule (canonical SMILES) given more than once with different labels is kept,
    with a warning naming the rows.

    Args:
        path: A ``.csv`` or ``.sdf`` file.
        smiles_column: CSV column holding the SMILES (ignored for SDF).
        target_column: CSV column or SDF property holding the label, or ``None`` for none.
        id_column: CSV column or SDF property holding a unique id, or ``None``.
        on_invalid: ``"skip"`` or ``"error"`` for molecules RDKit cannot read.
        transform: Applied to each item at access.
    """

    def __init__(
        self,
        path: str,
        smiles_column: str = "smiles",
        target_column: str | None = "target",
        id_column: str | None = None,
        on_invalid: str = "skip",
        transform: Callable[[Data], Data] | None = None,
    ) -> None:
        super().__init__(None, transform)
        if on_invalid not in ("skip", "error"):
            raise RegalError(f"data.on_invalid must be 'skip' or 'error'; got {on_invalid!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise RegalError(f"{self.path}: no such file (data.path)")
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            table = self._read_csv(smiles_column, target_column, id_column)
        elif suffix == ".sdf":
            table = self._read_sdf(target_column, id_column)
        else:
            raise RegalError(f"{self.path}: expected a .csv or .sdf file")
        self.target_names = [target_column or "target"]
        self.target_units: dict[str, str] = {}
        data_list, self.ids, self.where = self._featurize(table, on_invalid)
        self.data, self.slices = self.collate(data_list)

    def _read_csv(
        self, smiles_column: str, target_column: str | None, id_column: str | None
    ) -> pd.DataFrame:
        frame, lines = read_csv_table(self.path)
        for key, column in (
            ("data.smiles_column", smiles_column),
            ("data.target_column", target_column),
            ("data.id_column", id_column),
        ):
            if column is not None and column not in frame.columns:
                raise RegalError(_missing(self.path, "column", column, key, list(frame.columns)))
        return pd.DataFrame(
            {
                "where": [f"line {line}" for line in lines],
                "smiles": frame[smiles_column],
                "mol": None,
                "label": frame[target_column] if target_column else "",
                "id": frame[id_column] if id_column else [f"row{i}" for i in range(len(frame))],
            }
        )

    def _read_sdf(self, target_column: str | None, id_column: str | None) -> pd.DataFrame:
        _block = rdBase.BlockLogs()  # noqa: F841  (silences RDKit while alive)
        records = []
        props: set[str] = set()
        for i, mol in enumerate(Chem.SDMolSupplier(str(self.path))):
            if mol is not None:
                props |= set(mol.GetPropNames())
            records.append(
                {
                    "where": f"record {i + 1}",
                    "smiles": Chem.MolToSmiles(mol) if mol is not None else "",
                    "mol": mol,
                    "label": _prop(mol, target_column),
                    "id": _prop(mol, id_column or "_Name") or f"row{i}",
                }
            )
        for key, column in (("data.target_column", target_column), ("data.id_column", id_column)):
            if records and column is not None and column not in props:
                raise RegalError(_missing(self.path, "property", column, key, sorted(props)))
        table = pd.DataFrame(records, columns=["where", "smiles", "mol", "label", "id"])
        repeated = table["id"][table["id"].duplicated(keep=False)]
        if id_column is None and len(repeated):  # titles are no ids: number the records
            first = repeated.iloc[0]
            log.warning(
                "%s: record titles are not unique (%r at %s); using record numbers as ids "
                "(row0 = record 1, ...); data.id_column=PROPERTY names a property of unique ids",
                self.path,
                first,
                _places(table["where"][table["id"] == first].tolist()),
            )
            table["id"] = [f"row{i}" for i in range(len(table))]
        return table

    def _featurize(
        self, table: pd.DataFrame, on_invalid: str
    ) -> tuple[list[Data], list[str], list[str]]:
        labels = _labels(self.path, table)
        duplicated = table["id"][table["id"].duplicated(keep=False)]
        if len(duplicated):
            first = duplicated.iloc[0]
            where = _places(table["where"][table["id"] == first].tolist())
            raise RegalError(f"{self.path}: duplicate id {first!r} at {where}")
        data_list, ids, where_read, invalid = [], [], [], []
        canonical: dict[str, list[int]] = {}  # canonical SMILES -> rows with a label
        for row, (where, smiles, mol, ident) in enumerate(
            zip(table["where"], table["smiles"], table["mol"], table["id"], strict=True)
        ):
            try:
                mol = mol if mol is not None else parse_smiles(smiles)
                graph = mol_graph(mol)
            except ValueError:
                if on_invalid == "error":
                    raise RegalError(
                        f"{self.path}: {where}: cannot read molecule {smiles!r} "
                        "(data.on_invalid=skip skips such rows)"
                    ) from None
                invalid.append(where)
                continue
            if np.isfinite(labels[row]):
                canonical.setdefault(Chem.MolToSmiles(mol), []).append(row)
            x, edge_index, edge_attr = (torch.from_numpy(a) for a in graph)
            data_list.append(
                Data(
                    x=x,
                    edge_index=edge_index,
                    edge_attr=edge_attr,
                    y=torch.tensor([[labels[row]]], dtype=torch.float),
                    mol_id=torch.tensor([row]),
                    smiles=smiles,
                )
            )
            ids.append(ident)
            where_read.append(where)
        if invalid:
            log.warning(
                "%s: skipped %d unreadable molecules at %s",
                self.path,
                len(invalid),
                ", ".join(invalid),
            )
        if not data_list:
            raise RegalError(f"{self.path}: no readable molecule")
        _warn_conflicting_labels(self.path, table, labels, canonical)
        return data_list, ids, where_read


def _warn_conflicting_labels(
    path: Path, table: pd.DataFrame, labels: np.ndarray, canonical: dict[str, list[int]]
) -> None:
    """Warn about molecules (same canonical SMILES) given more than once with different
    labels, naming their rows; all of them are kept."""
    conflicts = [rows for rows in canonical.values() if len(set(labels[rows].tolist())) > 1]
    if not conflicts:
        return
    shown = "; ".join(
        _places([f"{table['where'].iloc[r]} ({labels[r]:g})" for r in rows])
        for rows in conflicts[:3]
    )
    more = f"; and {len(conflicts) - 3} more molecules" if len(conflicts) > 3 else ""
    log.warning(
        "%s: the same molecule with different labels (every row is kept): %s%s",
        path,
        shown,
        more,
    )


def _prop(mol: Chem.Mol | None, name: str | None) -> str:
    return mol.GetProp(name) if mol is not None and name and mol.HasProp(name) else ""


def _labels(path: Path, table: pd.DataFrame) -> np.ndarray:
    """Labels as floats, NaN where empty; refuses text and infinities naming the row."""
    raw = table["label"].fillna("").astype(str).str.strip()
    values = pd.to_numeric(raw.where(raw != ""), errors="coerce").to_numpy(dtype=float)
    bad = (raw != "") & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise RegalError(
            f"{path}: {table['where'].iloc[i]}: label {raw.iloc[i]!r} is not a finite number"
        )
    return values


def _missing(path: Path, kind: str, name: str, key: str, available: list[str]) -> str:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: no {kind} {name!r} ({key}){hint} Available: {available}"


def _places(places: list[str], shown: int = 5) -> str:
    """``line 2, line 5, ...`` for at most ``shown`` places, then how many more."""
    more = f", ... ({len(places)} in all)" if len(places) > shown else ""
    return ", ".join(places[:shown]) + more


def read_csv_table(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The rows of a CSV file as strings under its header's names, and the file line on
    which each row starts (the header is line 1).

    Blank lines are no rows and shift no line number. A row with fewer fields than the header
    gets empty strings for the rest; one with more (non-empty) fields is refused, naming the
    counts: an unquoted decimal comma (``CCO,1,5``) is the usual cause.

    Raises:
        RegalError: the file is not UTF-8 text, not CSV, has no header, or a row has more
            fields than the header.
    """
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    line = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for fields in reader:
                start, line = line + 1, reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if header is None:
                    header = _unique_names(fields)
                    continue
                if len(fields) > len(header) and any(v.strip() for v in fields[len(header) :]):
                    raise RegalError(
                        f"{path}: line {start}: {len(fields)} fields, but the header has "
                        f"{len(header)} ({','.join(header)}); quote a field that holds a comma "
                        '(a decimal comma: "1,5"), or write 1.5'
                    )
                rows.append((fields + [""] * len(header))[: len(header)])
                lines.append(start)
    except UnicodeDecodeError as exc:
        raise RegalError(f"{path}: not a readable CSV file (not UTF-8 text: {exc})") from exc
    except csv.Error as exc:
        raise RegalError(f"{path}: line {line + 1}: not a readable CSV file ({exc})") from exc
    if header is None:
        raise RegalError(f"{path}: not a readable CSV file (no header line)")
    return pd.DataFrame(rows, columns=header, dtype=str), lines


def _unique_names(names: list[str]) -> list[str]:
    """Column names with repeats renamed ``name.1``, ``name.2``, ... (as pandas does)."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(f"{name}.{count}" if count else name)
    return unique
