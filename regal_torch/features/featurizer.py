"""What a molecule featurizer is: SMILES in, one fixed-length vector of numbers per molecule out.

A featurizer computes every column it knows (:attr:`Featurizer.columns`) once per molecule
into the on-disk cache (:mod:`regal_torch.features.store`); ``use`` picks the columns a run
reads from it, so another choice of columns reuses the cache. A molecule the featurizer
cannot handle gets a reason instead of values (the cache records it, the dataset imputes
it: :mod:`regal_torch.features.molecule_features`).

Subclasses set :attr:`name` (the feature group and the prefix of its column names),
:attr:`version` (raise it with any change to the values: caches are keyed by it),
:attr:`columns`, :attr:`extra` (the pip extra that installs what it needs) and implement
:meth:`start`, :meth:`compute` and :meth:`packages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import ClassVar

import numpy as np

from regal_torch.errors import RegalError

__all__ = ["Featurizer", "missing_extra", "reason_of"]


def missing_extra(what: str, package: str, extra: str) -> RegalError:
    """The one-line error for a featurizer whose package is not installed."""
    return RegalError(
        f'{what} needs the {package} package: pip install -e ".[{extra}]" (or pip install '
        f"regal_torch[{extra}])"
    )


class Featurizer:
    """Base of the molecule featurizers.

    Args:
        use: The columns a run reads (a subset of :attr:`columns`, in this order); None: the
            featurizer's :attr:`default_use`.

    Raises:
        RegalError: ``use`` names a column the featurizer does not compute, or is empty.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    columns: ClassVar[tuple[str, ...]]
    default_use: ClassVar[tuple[str, ...] | None] = None  # None: every column
    extra: ClassVar[str]

    def __init__(self, use: Sequence[str] | None = None) -> None:
        chosen = tuple(use) if use is not None else (self.default_use or self.columns)
        unknown = [c for c in chosen if c not in self.columns]
        if unknown or not chosen:
            raise RegalError(
                f"data.featurizers.{self.name}.use={list(chosen)}: "
                + (f"unknown column {unknown[0]!r}; " if unknown else "empty; ")
                + f"{self.name} computes {_shown(self.columns)}"
            )
        self.use = chosen

    @property
    def names(self) -> list[str]:
        """The names of the columns a run reads: ``NAME_COLUMN`` (``xtb_gap``)."""
        return [f"{self.name}_{c}" for c in self.use]

    @cached_property
    def use_index(self) -> np.ndarray:
        """Positions of :attr:`use` in :attr:`columns`, ``[len(use)]`` int64 (made once: it is
        read for every molecule a loader reads)."""
        where = {c: i for i, c in enumerate(self.columns)}
        return np.array([where[c] for c in self.use], dtype=np.int64)

    def packages(self) -> dict[str, str]:
        """Versions of the packages whose change may change the values (part of the cache key).

        Raises:
            RegalError: a package is missing (:func:`missing_extra`).
        """
        raise NotImplementedError

    def start(self) -> None:
        """Get ready to compute in this process (load a model, import a package); called once
        per worker process before its first :meth:`compute`."""

    def compute(self, smiles: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        """The values of every column for each molecule, and why a molecule failed.

        Returns:
            ``(values, reasons)``: values ``[n, len(columns)]`` float32 (a failed molecule's
            row is NaN) and one reason per molecule (None where it succeeded).
        """
        raise NotImplementedError


def reason_of(exc: BaseException) -> str:
    """A failure's reason in one short line: ``TypeName: first line of the message``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _shown(columns: tuple[str, ...]) -> str:
    if len(columns) > 12:
        return f"{len(columns)} columns {columns[0]} .. {columns[-1]}"
    return ", ".join(columns)
