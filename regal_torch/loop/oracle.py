"""Where labels come from: known labels (benchmark mode), or, in learn mode, a query file the
user fills in (:class:`regal_torch.loop.queries.QueryOracle`) or a calculation
(:class:`ComputedOracle`: ``oracle=function`` or ``oracle=command``, in
:mod:`regal_torch.oracles`).

A computed oracle keeps its record of a round in that round's query file
(``queries/round_XXX.csv``): each label goes into its ``label`` column, and each failure's reason
into an ``error`` column, the file rewritten atomically as each result arrives. Asked again for
the same molecules (the run was killed), it computes only those with neither.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, write_csv
from regal_torch.loop.queries import (
    QUERY_COLUMNS,
    Answers,
    QueryOracle,
    query_path,
    read_table,
)
from regal_torch.quiet import show_progress

# What a calculation hands back for one molecule: its id, the label (None: failed) and why not.
Record = Callable[[str, float | None, str], None]


class BenchmarkOracle:
    """Reveals labels that are already known (benchmark mode).

    Args:
        truth: The label of every dataset position (NaN: none).
        where: The place in the input file of every dataset position (``line 5``,
            ``record 3``; :attr:`regal_torch.data.molecules.MoleculeDataset.where`), named
            instead of dataset positions when a label is missing; None: name positions.

    Raises:
        RegalError: some molecule has no label (benchmark mode needs every label).

    Shapes:
        truth: ``[N]`` targets of every dataset position; ``query`` -> ``[k]``.
    """

    def __init__(self, truth: Tensor, where: list[str] | None = None) -> None:
        missing = torch.isnan(truth).nonzero().view(-1).tolist()
        if missing:
            more = ", ..." if len(missing) > 10 else ""
            if where is None:
                places = f"dataset positions {', '.join(str(p) for p in missing[:10])}{more}"
            else:
                places = f"{', '.join(where[p] for p in missing[:10])}{more} of data.path"
            raise RegalError(
                f"mode=benchmark needs a label for every molecule; {len(missing)} have none "
                f"({places}); mode=learn asks for the missing ones"
            )
        self.truth = truth

    def query(self, positions: Tensor) -> Tensor:
        return self.truth[positions]


class ComputedOracle(QueryOracle):
    """Learn mode with labels from a calculation: the run goes on without waiting for a person.

    :meth:`ask` writes the round's query file (with an empty ``error`` column);
    :meth:`answers` computes the labels of the molecules that have neither a label nor an
    error there (:meth:`compute`, given by the subclass), saving each result as it arrives, and
    shows a bar of molecules done on stderr (``progress``). A failed molecule (the
    calculation raised, returned NaN, timed out, its process died or exited non-zero) gets
    its reason. If every molecule fails, the errors are cleared (a re-run computes them again:
    the oracle itself is most likely broken) and the run stops with one line.

    Args:
        run_dir, ids, smiles: As for :class:`QueryOracle`.
        progress: ``true``, ``false`` or ``auto`` (the ``progress`` option).
    """

    computes = True
    parallel = 1  # how many calculations run at once (for the timing line)

    def __init__(
        self, run_dir: Path, ids: list[str], smiles: list[str], progress: bool | str = "auto"
    ) -> None:
        super().__init__(run_dir, ids, smiles)
        self.show = show_progress(progress)

    def compute(self, round_: int, todo: list[tuple[str, str]], record: Record) -> None:
        """Compute the labels of ``todo`` (id, SMILES), calling ``record`` once per molecule."""
        raise NotImplementedError

    def ask(self, round_: int, positions: Tensor, mean: Tensor, std: Tensor) -> Path:
        path = super().ask(round_, positions, mean, std)
        _write(path, _read_record(path))
        return path

    def answers(self, round_: int, positions: Tensor) -> Answers:
        """Compute the labels of round ``round_``'s ``positions`` not computed yet.

        Raises:
            RegalError: every molecule failed, or SIGTERM stopped the calculations (the
                results so far are kept).
        """
        path = query_path(self.run_dir, round_)
        chosen = positions.tolist()
        queried = [self.ids[p] for p in chosen]
        frame = self._record_frame(round_, chosen)
        todo = [
            (i, s)
            for i, s, label, error in zip(
                frame["id"], frame["smiles"], frame["label"], frame["error"], strict=True
            )
            if not label.strip() and not error.strip()
        ]
        if todo:
            self._compute_all(round_, path, frame, todo)
        labels = dict(zip(frame["id"], frame["label"].str.strip(), strict=True))
        errors = dict(zip(frame["id"], frame["error"].str.strip(), strict=True))
        if not any(labels.values()):
            first = next(i for i in queried if errors[i])
            _write(path, frame.assign(error=""))
            raise RegalError(
                f"{path}: all {len(queried)} calculations failed (first: {first}: "
                f"{errors[first]}); nothing labeled: fix the oracle and re-run to compute "
                "them again"
            )
        done = [(p, float(labels[i])) for p, i in zip(chosen, queried, strict=True) if labels[i]]
        failed = [(p, errors[i]) for p, i in zip(chosen, queried, strict=True) if errors[i]]
        return Answers(
            torch.tensor([p for p, _ in done], dtype=torch.long),
            torch.tensor([v for _, v in done], dtype=torch.float),
            torch.tensor([p for p, _ in failed], dtype=torch.long),
            [reason for _, reason in failed],
        )

    def _record_frame(self, round_: int, chosen: list[int]) -> pd.DataFrame:
        """The round's record: its query file, or (deleted) one with empty predictions."""
        path = query_path(self.run_dir, round_)
        if path.exists():
            frame = _read_record(path)
            if sorted(frame["id"]) == sorted(self.ids[p] for p in chosen):
                return frame
            raise RegalError(
                f"{path}: its ids are not the round's {len(chosen)} picks; move it away to "
                "have them computed again"
            )
        nan = torch.full((len(chosen),), float("nan"))
        super().ask(round_, torch.tensor(chosen), nan, nan)
        return _read_record(path)

    def _compute_all(
        self, round_: int, path: Path, frame: pd.DataFrame, todo: list[tuple[str, str]]
    ) -> None:
        row_of = {ident: row for row, ident in enumerate(frame["id"])}
        before = len(frame) - len(todo)
        bar = tqdm(
            total=len(frame),
            initial=before,
            desc=f"labels {path.name}",
            unit="mol",
            position=1,
            leave=False,
            disable=not self.show,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        failures = [0]

        def record(ident: str, value: float | None, reason: str) -> None:
            column, text = ("label", repr(value)) if value is not None else ("error", reason)
            frame.iloc[row_of[ident], frame.columns.get_loc(column)] = text
            _write(path, frame)
            failures[0] += value is None
            bar.update(1)
            bar.set_postfix_str(f"failed {failures[0]}")  # redrawn for each molecule

        start = time.perf_counter()
        try:
            with _sigterm_stops(path):
                self.compute(round_, todo, record)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        print(
            f"{path}: {len(todo) - failures[0]} labels computed, {failures[0]} failed"
            + (f", {before} computed before" if before else "")
            + f"; {seconds:.1f} s, {seconds / len(todo):.2f} s per molecule with "
            f"{self.parallel} at a time",
            flush=True,
        )


def _read_record(path: Path) -> pd.DataFrame:
    """A query file's rows as strings, with an ``error`` column (empty where it has none)."""
    frame = read_table(path)
    return frame if "error" in frame.columns else frame.assign(error="")


def _write(path: Path, frame: pd.DataFrame) -> None:
    write_csv(path, frame[[*QUERY_COLUMNS, "error"]], RUN_HINT)


@contextmanager
def _sigterm_stops(path: Path) -> Iterator[None]:
    """SIGTERM (SLURM preemption, ``kill``) during the calculations raises a RegalError, so
    that the calculations' processes are ended and the run stops with one line."""

    def stop(signum: int, frame: object) -> None:
        raise RegalError(
            f"stopped by SIGTERM while computing the labels of {path}; those computed are "
            "kept: run the same command again to compute the rest"
        )

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
