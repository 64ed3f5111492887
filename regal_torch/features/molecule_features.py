"""A dataset's molecule features: the columns of its featurizers side by side, failures filled.

``data.features=[minimol, xtb]`` gives every molecule the vector of the MiniMol columns then
the xTB columns a run reads (each featurizer's ``use``), in that order. Each featurizer's
values come from its store (:mod:`regal_torch.features.store`), computed once per molecule.

The rule for a molecule a featurizer fails on (no geometry, an SCF that does not converge,
a molecule MiniMol refuses): it is kept, its failure is recorded (the store's
``failures.json``, :attr:`MoleculeFeatures.failures`, and a warning at every load naming how
many and the first ones), and that featurizer's columns are filled with the column means over
the molecules it succeeded on (so, once standardised, with zeros: the model sees "average"
there). Dropping such molecules would change the dataset's positions and its test set.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer
from regal_torch.features.store import FeatureStore, open_store, smiles_digest

__all__ = ["MoleculeFeatures", "molecule_features"]

log = logging.getLogger(__name__)


def molecule_features(
    names: Sequence[str] | None,
    featurizers: Mapping[str, Featurizer] | None,
    smiles: Sequence[str],
    folder: Path,
    workers: int,
) -> MoleculeFeatures | None:
    """The features ``names`` (featurizers of ``featurizers``) of ``smiles``, built where
    needed under ``folder``; None when ``names`` is empty.

    Raises:
        RegalError: a name without a featurizer (naming those there are), a name given twice,
            a featurizer's missing package, an unwritable folder.
    """
    names = list(names or [])
    if not names:
        return None
    featurizers = dict(featurizers or {})
    for name in names:
        if name not in featurizers:
            known = ", ".join(sorted(featurizers)) or "none"
            raise RegalError(
                f"data.features: no featurizer {name!r} (data.featurizers has {known})"
            )
    if len(set(names)) < len(names):
        raise RegalError(f"data.features={names} names a featurizer twice")
    digest = smiles_digest(smiles)
    chosen = [featurizers[name] for name in names]
    stores = [open_store(f, smiles, folder, workers, digest) for f in chosen]
    return MoleculeFeatures(chosen, stores, smiles)


class MoleculeFeatures:
    """The features of N molecules (see the module docstring).

    Attributes:
        names: The column names, ``[F]`` (``minimol_0`` .. ``xtb_gap``).
        groups: Each featurizer's name and number of columns, in order (models give each
            group a kernel of its own, :mod:`regal_torch.models.feature_kernels`).
        failures: Each featurizer's failed rows and their reasons.

    Shapes:
        :meth:`rows`: ``[k]`` positions -> ``[k, F]`` float32.
    """

    def __init__(
        self,
        featurizers: Sequence[Featurizer],
        stores: Sequence[FeatureStore],
        smiles: Sequence[str],
    ) -> None:
        self._parts = [
            (store, f.use_index, store.fill[f.use_index])
            for f, store in zip(featurizers, stores, strict=True)
        ]
        self._any_failed = [bool(store.failures) for store in stores]
        self.names = [name for f in featurizers for name in f.names]
        self.groups = {f.name: len(f.use) for f in featurizers}
        self.failures = {
            f.name: store.failures for f, store in zip(featurizers, stores, strict=True)
        }
        for f, store in zip(featurizers, stores, strict=True):
            if store.failures:
                rows = sorted(store.failures)
                shown = "; ".join(f"{smiles[r]!r}: {store.failures[r]}" for r in rows[:3])
                log.warning(
                    "features %s failed for %d of %d molecules (%s%s); their %s columns are "
                    "filled with the column means (%s)",
                    f.name,
                    len(rows),
                    len(store),
                    shown,
                    ", ..." if len(rows) > 3 else "",
                    f.name,
                    store.folder / "failures.json",
                )

    def __len__(self) -> int:
        return len(self._parts[0][0])

    @property
    def dim(self) -> int:
        return len(self.names)

    def rows(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """The features of ``positions``, failures filled (see the module docstring)."""
        positions = np.asarray(positions, dtype=np.int64)
        blocks = []
        for (store, use, fill), failed in zip(self._parts, self._any_failed, strict=True):
            block = store.values[positions][:, use]
            if failed:
                block = np.where(np.isnan(block), fill, block)
            blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)

    def column(self, name: str) -> int:
        """The position of column ``name`` among :attr:`names`.

        Raises:
            RegalError: no such column (naming the closest ones).
        """
        if name in self.names:
            return self.names.index(name)
        close = difflib.get_close_matches(name, self.names, n=3)
        raise RegalError(
            f"no molecule feature {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        )
