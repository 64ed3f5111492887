"""What the loop, the datamodule and the outputs read of a dataset: :class:`MoleculeData`.

The three datasets of regal_torch follow it (:class:`regal_torch.data.qm9.QM9Dataset`,
:class:`regal_torch.data.molecules.MoleculeDataset`, :class:`regal_torch.data.table.TableDataset`);
a new data source is a class that does too, and a ``configs/data/NAME.yaml`` naming it
(README, "Extending").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import Tensor
from torch_geometric.data import Data

if TYPE_CHECKING:
    from regal_torch.features.molecule_features import MoleculeFeatures

__all__ = ["MoleculeData"]


@runtime_checkable
class MoleculeData(Protocol):
    """A map-style dataset of N items (molecule graphs, or a table's rows) with labels.

    Attributes:
        target_names: The names of ``y``'s columns (``data.target`` picks one).
        target_units: Each target's unit by name (``eV``; may be empty).
        y: The labels, NaN where unknown, ``[N, n_targets]``.
        mol_id: Each item's provenance id (a QM9 index, a file row), ``[N]``.
        smiles: Each item's SMILES (empty strings for a table's rows).
        ids: The user's id of each item, or None (then ``mol_id`` as text).
        where: Each item's place in its file (``line 5``), or None.
        num_node_features: Atom features per node (a table: its feature columns).
        num_edge_features: Bond features per edge; None for a table (the models then use an
            MLP on the rows).
        feature_names: The item features' column names: the molecule features
            (``data.features``) or a table's columns; empty if none.
        molecule_features: The molecule features (None without them, and for a table).

    Shapes:
        ``dataset[i]``: a PyG ``Data`` with ``x``, ``edge_index``, ``edge_attr`` (None for a
        table), ``smiles`` where known and ``features`` ``[1, F]`` with molecule features.
    """

    target_names: Sequence[str]
    target_units: dict[str, str]
    y: Tensor
    mol_id: Tensor
    smiles: Sequence[str]
    ids: Sequence[str] | None
    where: Sequence[str] | None
    feature_names: list[str]
    molecule_features: MoleculeFeatures | None

    @property
    def num_node_features(self) -> int: ...

    @property
    def num_edge_features(self) -> int | None: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Data: ...
