"""What an engine is (:class:`Engine`) and its jobs: a featurizer's chunks of molecules given
out as pieces, a piece
whose worker died split in two and given out again, and each chunk's results put back
together when all its pieces are back.

A piece is ``(chunk, start, smiles)``: the molecules ``start ..`` of ``chunk``. Splitting a
piece that kills its worker, down to one molecule, finds the molecule that kills it: that one
fails with the given reason and the others are computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

__all__ = ["Engine", "Featurizing", "JobQueue", "Piece", "Result"]

Piece = tuple[int, int, list[str]]
# a chunk's results: (chunk, values [n, columns] float32 (NaN where failed), reasons)
Result = tuple[int, np.ndarray, list[str | None]]


class Featurizing(Protocol):
    """What an engine needs of a featurizer (a :mod:`regal_torch.features` featurizer)."""

    columns: Sequence[str]

    def start(self) -> None: ...

    def compute(self, smiles: Sequence[str]) -> tuple[np.ndarray, list[str | None]]: ...


class Engine(Protocol):
    """Where a featurizer's jobs run."""

    def slots(self) -> int:
        """How many jobs run at once (processes, or the cluster's CPUs)."""
        ...

    def describe(self, jobs: int) -> str:
        """How ``jobs`` jobs will run, for the feature stage's first line."""
        ...

    def features(
        self, featurizer: Featurizing, jobs: Iterator[tuple[int, list[str]]], count: int
    ) -> AbstractContextManager[Iterator[Result]]:
        """``(job, values, reasons)`` of each of the ``count`` jobs ``(job, smiles)`` as it is
        done (each job's molecules in order; the jobs in any order)."""
        ...


class JobQueue:
    """Pieces of ``jobs`` (``(chunk, smiles)``, read as they are needed) for a featurizer of
    ``width`` columns."""

    def __init__(self, jobs: Iterator[tuple[int, list[str]]], width: int) -> None:
        self.jobs, self.width = iter(jobs), width
        self.split: list[Piece] = []
        self.sizes: dict[int, int] = {}
        self.parts: dict[int, list[tuple[int, np.ndarray, list[str | None]]]] = {}

    def take(self) -> Piece | None:
        """The next piece to compute; None when every job was given out."""
        if self.split:
            return self.split.pop()
        job = next(self.jobs, None)
        if job is None:
            return None
        self.sizes[job[0]] = len(job[1])
        return (job[0], 0, list(job[1]))

    def crashed(self, piece: Piece, reason: str) -> Result | None:
        """``piece`` killed its worker: split it, or fail its one molecule with ``reason``."""
        chunk, start, smiles = piece
        if len(smiles) > 1:
            half = len(smiles) // 2
            self.split += [(chunk, start, smiles[:half]), (chunk, start + half, smiles[half:])]
            return None
        return self.done(piece, np.full((1, self.width), np.nan, np.float32), [reason])

    def done(self, piece: Piece, values: np.ndarray, reasons: list[str | None]) -> Result | None:
        """``piece`` computed: its chunk's results once every piece of it is back."""
        chunk, start, _ = piece
        parts = self.parts.setdefault(chunk, [])
        parts.append((start, values, reasons))
        if sum(len(r) for _, _, r in parts) < self.sizes[chunk]:
            return None
        pieces = sorted(self.parts.pop(chunk), key=lambda part: part[0])
        return (
            chunk,
            np.concatenate([v for _, v, _ in pieces]),
            [r for _, _, rs in pieces for r in rs],
        )
