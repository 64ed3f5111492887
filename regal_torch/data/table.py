"""A numeric table from a CSV file: each row is one item, its feature columns one vector."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data, InMemoryDataset

from regal_torch.data.molecule_files import read_csv_table
from regal_torch.errors import RegalError

log = logging.getLogger(__name__)


class TableDataset(InMemoryDataset):
    """Rows of a CSV file as feature vectors, for regression on tabular data.

    Every item has ``x`` ``[1, D]`` (the row's feature values, float32, unscaled: the models
    standardise them on the labeled rows, see
    :meth:`regal_torch.data.datamodule.ActiveDataModule.model_inputs`), ``y`` ``[1, 1]``
    (NaN where the target cell is empty: unlabeled) and ``mol_id`` ``[1]`` (the row, counting
    from 0; blank lines are no rows). A row is a graph of one node without bonds, so
    ``num_node_features`` is D and ``num_edge_features`` is None, which tells the models to
    use an MLP (or, ``model=gp``, an RBF kernel on the features) in place of a graph network.

    As :class:`regal_torch.data.molecules.MoleculeDataset` does for molecules, ``ids`` holds
    every row's id (``id_column``, else ``row<i>``), ``where`` its place in the file
    (``line 5``; the header is line 1, blank lines count), and ``smiles`` an empty string per
    row (a table has no structures; learn mode's query files leave that column empty).

    Feature columns are ``feature_columns``, or else every column other than the target and
    id columns that holds a number in some row (columns of text only, such as names, are left
    out, and logged). Every feature cell must hold a finite number: an empty, non-numeric or
    infinite one is one :class:`RegalError` line naming the file, line and column; so are a
    missing column (with the closest name), a target that is not a number, duplicate ids and
    a table without rows or features.

    Args:
        path: A ``.csv`` file with a header line.
        target_column: Column of the label (empty cells: unlabeled), or None: no labels (a
            file to predict, :mod:`regal_torch.predict`).
        feature_columns: Columns of the features, in this order; None: every numeric column
            but the target and id columns, in file order.
        id_column: Column of unique ids, or None (ids ``row0``, ``row1``, ...).
    """

    def __init__(
        self,
        path: str,
        target_column: str | None = "target",
        feature_columns: Sequence[str] | None = None,
        id_column: str | None = None,
    ) -> None:
        super().__init__(None)
        self.path = Path(path)
        if self.path.is_dir():
            raise RegalError(f"{self.path}: a folder, not a file (data.path)")
        if not self.path.is_file():
            raise RegalError(f"{self.path}: no such file (data.path)")
        frame, lines = read_csv_table(self.path)
        if frame.empty:
            raise RegalError(f"{self.path}: no rows under the header")
        columns = list(frame.columns)
        self._check_columns(columns, target_column, id_column, feature_columns)
        self.where = [f"line {line}" for line in lines]
        if feature_columns is None:
            feature_columns = self._numeric_columns(frame, target_column, id_column)
        self.feature_names = list(feature_columns)
        features = np.stack(
            [self._numbers(frame[name], name, empty_ok=False) for name in self.feature_names], 1
        )
        if target_column is None:
            labels = np.full(len(frame), np.nan)
        else:
            labels = self._numbers(frame[target_column], target_column, empty_ok=True)
        self.ids = self._ids(frame, id_column)
        self.smiles = [""] * len(frame)
        self.molecule_features = None  # a table's rows are its features
        self.target_names = [target_column or "target"]
        self.target_units: dict[str, str] = {}
        data_list = [
            Data(
                x=torch.tensor(features[i : i + 1], dtype=torch.float),
                y=torch.tensor([[labels[i]]], dtype=torch.float),
                mol_id=torch.tensor([i]),
            )
            for i in range(len(frame))
        ]
        self.data, self.slices = self.collate(data_list)

    @property
    def num_edge_features(self) -> None:
        """None: a table's rows have no bonds (the models' sign to use an MLP)."""
        return None

    def _check_columns(
        self,
        columns: list[str],
        target_column: str,
        id_column: str | None,
        feature_columns: Sequence[str] | None,
    ) -> None:
        named = [] if target_column is None else [("data.target_column", target_column)]
        if id_column is not None:
            named.append(("data.id_column", id_column))
        if feature_columns is not None:
            if len(feature_columns) == 0:
                raise RegalError("data.feature_columns is empty; name at least one column")
            named += [("data.feature_columns", name) for name in feature_columns]
            taken = {target_column, id_column} & set(feature_columns)
            if taken:
                raise RegalError(
                    f"data.feature_columns holds {sorted(taken)[0]!r}, which is the target "
                    "or id column"
                )
        for key, name in named:
            if name not in columns:
                close = difflib.get_close_matches(name, columns, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RegalError(
                    f"{self.path}: no column {name!r} ({key}){hint} Available: {columns}"
                )

    def _numeric_columns(
        self, frame: pd.DataFrame, target_column: str, id_column: str | None
    ) -> list[str]:
        """Every column but the target and id that holds a number in some row."""
        chosen, text = [], []
        for name in frame.columns:
            if name in (target_column, id_column):
                continue
            numbers = pd.to_numeric(frame[name].str.strip(), errors="coerce")
            (chosen if numbers.notna().any() else text).append(name)
        if text:
            log.info("%s: columns of text left out of the features: %s", self.path, text)
        if not chosen:
            raise RegalError(
                f"{self.path}: no numeric feature column besides the target "
                f"{target_column!r}; columns: {list(frame.columns)}"
            )
        return chosen

    def _numbers(self, cells: pd.Series, name: str, empty_ok: bool) -> np.ndarray:
        """A column as floats (NaN where empty, if ``empty_ok``); the first cell that is not
        a finite number (or is empty) is refused, naming line and column."""
        raw = cells.str.strip()
        values = pd.to_numeric(raw.where(raw != ""), errors="coerce").to_numpy(dtype=float)
        empty = (raw == "").to_numpy()
        bad = ~np.isfinite(values) & ~(empty & empty_ok)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            role = "label" if empty_ok else "feature"
            problem = "is empty" if empty[i] else f"{raw.iloc[i]!r} is not a finite number"
            more = f" ({int(bad.sum())} such cells in this column)" if bad.sum() > 1 else ""
            raise RegalError(
                f"{self.path}: {self.where[i]}: {role} column {name!r}: {problem}{more}"
            )
        return values

    def _ids(self, frame: pd.DataFrame, id_column: str | None) -> list[str]:
        if id_column is None:
            return [f"row{i}" for i in range(len(frame))]
        ids = frame[id_column].str.strip()
        empty = np.flatnonzero((ids == "").to_numpy())
        if len(empty):
            places = ", ".join(self.where[i] for i in empty[:5])
            raise RegalError(f"{self.path}: empty id (data.id_column) at {places}")
        repeated = ids[ids.duplicated(keep=False)]
        if len(repeated):
            first = repeated.iloc[0]
            places = ", ".join(self.where[i] for i in np.flatnonzero(ids == first)[:5])
            raise RegalError(f"{self.path}: duplicate id {first!r} at {places}")
        return ids.tolist()
