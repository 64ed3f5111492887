"""Learn mode's query files: the molecules to label, written out and read back.

A query file is a CSV with the columns ``id, smiles, predicted_mean, predicted_std, label``,
one row per molecule picked in a round, ``label`` empty. The user fills in the labels they
have (in that file, or in another CSV with at least ``id`` and ``label`` columns) and re-runs
the command. Rows whose label is still empty are not taken: those molecules go back to the
pool. Every problem is one :class:`RegalError` line naming the file and line (header = 1).

A file that holds labels the user gave is never overwritten: a query file with a label filled
in, or, in a folder without ``state.pt``, ``selected.csv`` (:func:`check_fresh_start`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, write_csv

QUERY_COLUMNS = ("id", "smiles", "predicted_mean", "predicted_std", "label")


@dataclass
class Answers:
    """The labels a learn-mode oracle got for a round's picks.

    Shapes:
        positions, values: ``[m]``, the picks that got a label and their labels;
        failed: ``[f]``, the picks whose calculation failed, ``reasons`` aligned with it
        (none for query files filled in by hand).
    """

    positions: Tensor
    values: Tensor
    failed: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    reasons: list[str] = field(default_factory=list)


def query_path(run_dir: Path, round_: int) -> Path:
    """``run_dir/queries/round_XXX.csv``, the query file of acquisition round ``round_``."""
    return Path(run_dir) / "queries" / f"round_{round_:03d}.csv"


def write_query(path: Path, ids: list[str], smiles: list[str], mean: Tensor, std: Tensor) -> None:
    """Write a query file atomically, label column empty.

    Shapes:
        mean, std: ``[k]``, aligned with ``ids`` and ``smiles``.
    """
    frame = pd.DataFrame(
        {
            "id": ids,
            "smiles": smiles,
            "predicted_mean": mean.cpu().numpy(),
            "predicted_std": std.cpu().numpy(),
            "label": "",
        },
        columns=list(QUERY_COLUMNS),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, frame, RUN_HINT)


_LARGEST = float(np.finfo(np.float32).max)  # labels are kept as float32


def read_answers(path: Path, queried: list[str]) -> dict[str, float]:
    """The labels filled in at ``path`` for the ``queried`` ids (empty labels left out).

    Raises:
        RegalError: missing file or column, an id that was not queried or appears twice,
            a label that is not a finite number.
    """
    path = Path(path)
    if not path.is_file():
        raise RegalError(f"{path}: no such file (the labels of the pending query)")
    frame, lines = _read_table(path)
    for column in ("id", "label"):
        if column not in frame.columns:
            close = difflib.get_close_matches(column, list(frame.columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RegalError(f"{path}: no column {column!r}{hint} Available: {list(frame.columns)}")
    wanted = set(queried)
    answers: dict[str, float] = {}
    seen: dict[str, int] = {}
    for line, ident, raw in zip(lines, frame["id"], frame["label"], strict=True):
        if ident not in wanted:
            raise RegalError(f"{path}: line {line}: id {ident!r} was not queried in this round")
        if ident in seen:
            raise RegalError(f"{path}: line {line}: id {ident!r} repeats line {seen[ident]}")
        seen[ident] = line
        raw = raw.strip()
        if raw == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            value = np.nan
        if not np.isfinite(value):
            raise RegalError(f"{path}: line {line}: label {raw!r} is not a finite number")
        if abs(value) > _LARGEST:
            raise RegalError(
                f"{path}: line {line}: label {raw!r} is beyond the largest label regal_torch "
                f"keeps ({_LARGEST:.3g}, float32)"
            )
        answers[ident] = value
    return answers


def _read_table(path: Path) -> tuple[pd.DataFrame, list[int]]:
    # imported here: regal_torch.data.molecules loads RDKit, which status does not need
    from regal_torch.data.molecule_files import read_csv_table

    return read_csv_table(path)


def read_table(path: Path) -> pd.DataFrame:
    """The rows of the CSV file at ``path`` as strings (empty cells as ``""``)."""
    return _read_table(path)[0]


def labels_in(path: Path) -> int:
    """How many labels are filled in the query file at ``path`` (0 if it has none, or no
    ``label`` column; an unreadable file counts as holding some, 1)."""
    try:
        frame, _ = _read_table(path)
    except RegalError:
        return 1
    if "label" not in frame.columns:
        return 0
    return int((frame["label"].str.strip() != "").sum())


def check_fresh_start(run_dir: Path) -> None:
    """Refuse to start a learn-mode run over in ``run_dir`` (no ``state.pt``) where files
    hold labels the user gave: query files with a label filled in, and ``selected.csv`` with
    rows of round 1 or later (round 0 is the labeled rows of the data file).

    Starting over would write a new ``queries/round_001.csv`` and ``selected.csv`` over them.

    Raises:
        RegalError: naming those files and how many labels each holds.
    """
    run_dir = Path(run_dir)
    held = [
        (path.relative_to(run_dir), n)
        for path in sorted((run_dir / "queries").glob("round_*.csv"))
        if (n := labels_in(path))
    ]
    selected = run_dir / "selected.csv"
    if selected.is_file():
        try:
            rounds = pd.read_csv(selected, usecols=["round"])["round"]
            n = int((pd.to_numeric(rounds, errors="coerce") != 0).sum())
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            n = 1  # unreadable: it may hold labels
        if n:
            held.append((Path("selected.csv"), n))
    if held:
        listing = ", ".join(f"{path} ({n} label{'s' * (n != 1)})" for path, n in held)
        raise RegalError(
            f"{run_dir}: no state.pt, but {listing} hold labels you gave; starting this run "
            "over would overwrite them: move them out of the folder first (labels=FILE gives "
            "their labels to a new query), or use another hydra.run.dir"
        )


class QueryOracle:
    """Learn mode: the user labels the picked molecules through query files.

    :meth:`ask` writes ``run_dir/queries/round_XXX.csv``; :meth:`answers` reads the labels
    filled in there, or in ``labels_file`` when given (``labels=FILE``).

    Args:
        run_dir: The run directory.
        ids: The user's id of every dataset position.
        smiles: The SMILES of every dataset position.
        labels_file: A CSV with ``id`` and ``label`` columns to read instead of the query file.
    """

    computes = False  # the run stops after each query for a person to fill it in

    def __init__(
        self, run_dir: Path, ids: list[str], smiles: list[str], labels_file: str | None = None
    ) -> None:
        self.run_dir, self.ids, self.smiles = Path(run_dir), ids, smiles
        self.labels_file = labels_file
        if not (self.run_dir / "state.pt").exists():  # the run starts (over)
            check_fresh_start(self.run_dir)

    def ask(self, round_: int, positions: Tensor, mean: Tensor, std: Tensor) -> Path:
        """Write the query file of ``round_`` for ``positions`` (``[k]``); returns its path.

        Raises:
            RegalError: a file of that name exists and holds labels.
        """
        path = query_path(self.run_dir, round_)
        if path.exists() and (n := labels_in(path)):
            raise RegalError(
                f"{path} holds {n} label{'s' * (n != 1)}; refusing to write round {round_}'s "
                "query over it: move it away (labels=FILE gives its labels to the new query) "
                "and re-run"
            )
        chosen = positions.tolist()
        write_query(
            path, [self.ids[p] for p in chosen], [self.smiles[p] for p in chosen], mean, std
        )
        return path

    def answers(self, round_: int, positions: Tensor) -> Answers:
        """The queried ``positions`` that got a label, and their labels (``[m]`` each).

        A pending query file that is gone (and no ``labels_file``) is written again from the
        picks, its ``predicted_mean`` and ``predicted_std`` empty (the round's model is not
        kept), and the run stops there.

        Raises:
            RegalError: no label filled in yet, the query file was written again, or a bad
                answer file (:func:`read_answers`).
        """
        path = Path(self.labels_file) if self.labels_file else query_path(self.run_dir, round_)
        queried = [self.ids[p] for p in positions.tolist()]
        if not self.labels_file and not path.exists():
            nan = torch.full((len(queried),), float("nan"))
            write_query(path, queried, [self.smiles[p] for p in positions.tolist()], nan, nan)
            raise RegalError(
                f"{path} was missing: written again with the {len(queried)} pending molecules "
                "(predicted_mean and predicted_std empty: the round's model is not kept); "
                "fill in the 'label' column and re-run"
            )
        got = read_answers(path, queried)
        if not got:
            raise RegalError(
                f"{path}: no label filled in yet; fill in the 'label' column and re-run"
            )
        filled = [(p, got[i]) for p, i in zip(positions.tolist(), queried, strict=True) if i in got]
        return Answers(
            torch.tensor([p for p, _ in filled], dtype=torch.long),
            torch.tensor([v for _, v in filled], dtype=torch.float),
        )
