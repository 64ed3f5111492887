"""A dataset's molecule features: the columns of its featurizers side by side, computed only
for the molecules a step reads.

``data.features=[minimol, xtb]`` gives every molecule the vector of the MiniMol columns then
the xTB columns a run reads (each featurizer's ``use``), in that order. Each featurizer's
values come from its store (:mod:`regal_torch.features.store`), shared by every data set and
computed once per molecule. Nothing is computed when the dataset is made:
:meth:`MoleculeFeatures.ensure` computes what the store lacks of the molecules a step is about
to read (every loader of :class:`regal_torch.data.datamodule.ActiveDataModule` calls it for
its molecules), and :meth:`MoleculeFeatures.rows` reads only molecules ensured before.

The rule for a molecule a featurizer fails on (no geometry, an SCF that does not converge,
a molecule MiniMol refuses): it is kept, its failure is recorded (the store's part,
:attr:`MoleculeFeatures.failures`, and a warning naming how many and the first ones), and
its values in that featurizer's columns are NaN. The model fills them, once its inputs are
standardised, with zeros, i.e. the means over its training molecules
(:class:`regal_torch.models.feature_scaling.FeatureScaler`), which are saved with it: the
same molecule gets the same prediction in the run and in ``regal_torch.predict``. Dropping
such molecules would change the dataset's positions and its test set.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regal_torch.engine.jobs import Engine
from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer
from regal_torch.features.store import FeatureStore, molecule_keys

__all__ = ["MoleculeFeatures", "check_names", "molecule_features"]

log = logging.getLogger(__name__)


def molecule_features(
    names: Sequence[str] | str | None,
    featurizers: Mapping[str, Featurizer] | None,
    smiles: Sequence[str],
    folder: Path,
    engine: Engine,
) -> MoleculeFeatures | None:
    """The features ``names`` (featurizers of ``featurizers``; one name alone is a list of
    one) of ``smiles``, from their stores under ``folder``, computed on ``engine``; None when
    ``names`` is empty. Computes nothing (:meth:`MoleculeFeatures.ensure` does).

    Raises:
        RegalError: a name without a featurizer (naming those there are), a name given twice,
            a featurizer's missing package, an unwritable folder.
    """
    names = [names] if isinstance(names, str) else list(names or [])
    if not names:
        return None
    featurizers = dict(featurizers or {})
    check_names(names, featurizers)
    chosen = [featurizers[name] for name in names]
    return MoleculeFeatures(chosen, [FeatureStore(f, folder) for f in chosen], smiles, engine)


def check_names(names: Sequence[str], featurizers: Mapping[str, Any]) -> None:
    """Refuse ``data.features`` names without a featurizer in ``featurizers`` (configs or
    objects) or given twice.

    Raises:
        RegalError: naming the featurizers there are, or the name given twice.
    """
    for name in names:
        if name not in featurizers:
            known = ", ".join(sorted(featurizers)) or "none"
            raise RegalError(
                f"data.features: no featurizer {name!r} (data.featurizers has {known})"
            )
    if len(set(names)) < len(names):
        shown = ", ".join(names)
        raise RegalError(f"data.features=[{shown}] names a featurizer twice")


class MoleculeFeatures:
    """The features of N molecules (see the module docstring).

    Attributes:
        names: The column names, ``[F]`` (``minimol_0`` .. ``xtb_gap``).
        groups: Each featurizer's name and number of columns, in order (models give each
            group a kernel of its own, :mod:`regal_torch.models.feature_kernels`).
        computed: Molecules this object had computed so far (by any of its featurizers).
        seconds: The time :meth:`ensure` spent so far.

    Shapes:
        :meth:`ensure`: ``[k]`` positions. :meth:`rows`: ``[k]`` positions -> ``[k, F]``
        float32 (NaN where a featurizer failed).
    """

    def __init__(
        self,
        featurizers: Sequence[Featurizer],
        stores: Sequence[FeatureStore],
        smiles: Sequence[str],
        engine: Engine,
    ) -> None:
        self.featurizers, self.stores = list(featurizers), list(stores)
        self.smiles, self.engine = smiles, engine
        self.names = [name for f in featurizers for name in f.names]
        self.groups = {f.name: len(f.use) for f in featurizers}
        n = len(smiles)
        self._keys = np.zeros(n, dtype="S16")
        self._has_key = np.zeros(n, dtype=bool)
        self._entries = [np.full(n, -1, dtype=np.int64) for _ in stores]
        self.computed, self.seconds = 0, 0.0

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def dim(self) -> int:
        return len(self.names)

    def ensure(self, positions: np.ndarray | Sequence[int]) -> int:
        """Make the features of ``positions`` readable: find them in the stores, computing
        there what no process computed yet; returns how many molecules were computed.

        Raises:
            RegalError: a featurizer cannot start (a missing package), a store cannot be
                written.
        """
        start = time.perf_counter()
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        keyless = positions[~self._has_key[positions]]
        if len(keyless):
            self._keys[keyless] = molecule_keys([self.smiles[i] for i in keyless])
            self._has_key[keyless] = True
        computed = np.zeros(len(positions), dtype=bool)
        for f, store, entries in zip(self.featurizers, self.stores, self._entries, strict=True):
            missing = positions[entries[positions] < 0]
            if len(missing) == 0:
                continue
            store.refresh()
            entries[missing] = store.locate(self._keys[missing])
            absent = missing[entries[missing] < 0]
            if len(absent):
                smiles = [self.smiles[i] for i in absent]
                store.add(self._keys[absent], smiles, self.engine, asked=len(positions))
                entries[absent] = store.locate(self._keys[absent])
                computed |= np.isin(positions, absent)
            self._warn_failures(f, store, missing, entries[missing])
        self.computed += int(computed.sum())
        self.seconds += time.perf_counter() - start
        return int(computed.sum())

    def _warn_failures(
        self, f: Featurizer, store: FeatureStore, positions: np.ndarray, entries: np.ndarray
    ) -> None:
        failed = store.failed(entries)
        if not failed.any():
            return
        first = positions[failed][:3]
        reasons = store.failures(entries[failed][:3])
        shown = "; ".join(
            f"{self.smiles[r]!r}: {why}" for r, why in zip(first, reasons, strict=True)
        )
        log.warning(
            "features %s failed for %d of %d molecules read now (%s%s); the model fills "
            "their %s columns with its training molecules' means",
            f.name, int(failed.sum()), len(positions), shown,
            ", ..." if failed.sum() > 3 else "", f.name,
        )  # fmt: skip

    @property
    def failures(self) -> dict[str, dict[int, str]]:
        """Each featurizer's failed positions among those ensured so far, and why."""
        found = {}
        for f, store, entries in zip(self.featurizers, self.stores, self._entries, strict=True):
            known = np.flatnonzero(entries >= 0)
            failed = known[store.failed(entries[known])]
            found[f.name] = dict(zip(failed.tolist(), store.failures(entries[failed]), strict=True))
        return found

    def rows(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """The features of ``positions`` (see the module docstring).

        Raises:
            RegalError: a position was not ensured (a caller that reads features must call
                :meth:`ensure` first).
        """
        positions = np.asarray(positions, dtype=np.int64)
        blocks = []
        for f, store, entries in zip(self.featurizers, self.stores, self._entries, strict=True):
            found = entries[positions]
            if (found < 0).any():
                raise RegalError(
                    f"features {f.name}: {int((found < 0).sum())} molecules read before their "
                    "features were computed (MoleculeFeatures.ensure)"
                )
            blocks.append(store.values(found)[:, f.use_index])
        return np.concatenate(blocks, axis=1)

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
