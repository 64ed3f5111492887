"""Index sets labeled / pool / val / test over one molecule dataset."""

from __future__ import annotations

import difflib
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from regal_torch.errors import RegalError
from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.target_scaling import TargetScaler


class ActiveDataModule(pl.LightningDataModule):
    """Disjoint index sets over dataset positions, and the labels revealed so far.

    At construction, ``test_size`` then ``val_size`` molecules are drawn at random with
    ``split_seed`` (fixed by default, so every active-learning seed and strategy is scored
    on the same test set); all other molecules form the pool. :meth:`label` moves molecules
    from the pool to the labeled set. Val and test targets are known (they are read from
    the dataset); pool targets are not, until labeled.

    The target's standardisation (:meth:`target_scaling`), and on a table the features'
    (:meth:`model_inputs`), are fitted on the labeled set only. Batches carry ``y`` in
    original units and a table's features unscaled; models standardise internally.

    Args:
        dataset: A :class:`regal_torch.data.protocol.MoleculeData`: molecule graphs with ``y``
            of shape ``[N, n_targets]`` and ``target_names`` (e.g.
            :class:`regal_torch.data.qm9.QM9Dataset`), or the rows of a table
            (:class:`regal_torch.data.table.TableDataset`, ``num_edge_features`` None).
        target: Name of the target column (e.g. ``"gap"``).
        val_size: Validation molecules: a fraction of the dataset if below 1, else a count.
        test_size: Test molecules: a fraction of the dataset if below 1, else a count.
        split_seed: Seed of the val/test draw.
        holdout_from_labeled: Draw val and test only from molecules whose label the dataset
            already has (learn mode, where the other molecules have none); sizes given as
            fractions are then fractions of those molecules.
        batch_size: Training batch size.
        predict_batch_size: Batch size for prediction over pool, val and test (default
            100, as in the config; each forward pass of MC-dropout holds this many graphs
            times its samples).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        dataset: Dataset,
        target: str,
        val_size: float = 0.1,
        test_size: float = 0.1,
        split_seed: int = 0,
        holdout_from_labeled: bool = False,
        batch_size: int = 64,
        predict_batch_size: int = 100,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.target = target
        self.batch_size = batch_size
        self.predict_batch_size = predict_batch_size
        self.num_workers = num_workers
        names = list(dataset.target_names)
        if target not in names:
            raise RegalError(f"data.target={target!r} is not a target of this dataset: {names}")
        self.truth: Tensor = dataset.y[:, names.index(target)].float()
        n = len(dataset)
        eligible = torch.arange(n)
        if holdout_from_labeled:
            eligible = eligible[torch.isfinite(self.truth)]
        m = len(eligible)
        n_test, n_val = _count(test_size, m, "test_size"), _count(val_size, m, "val_size")
        if n_test + n_val >= m and not holdout_from_labeled:
            raise RegalError(
                f"data.datamodule: test_size ({n_test}) + val_size ({n_val}) leave no pool "
                f"in a dataset of {n} molecules"
            )
        if n_test + n_val > m:
            raise RegalError(
                f"data.datamodule: test_size ({n_test}) + val_size ({n_val}) need more than "
                f"the {m} molecules with a label"
            )
        perm = eligible[torch.randperm(m, generator=torch.Generator().manual_seed(split_seed))]
        self.test = perm[:n_test].sort().values
        self.val = perm[n_test : n_test + n_val].sort().values
        held_out = torch.isin(torch.arange(n), perm[: n_test + n_val])
        self.pool = torch.arange(n)[~held_out]
        self.labeled = torch.empty(0, dtype=torch.long)
        self.labels = torch.full((n,), float("nan"))

    def label(self, positions: Tensor, values: Tensor) -> None:
        """Move ``positions`` (``[k]``) from the pool to the labeled set with ``values``."""
        positions = torch.as_tensor(positions, dtype=torch.long).view(-1)
        values = torch.as_tensor(values, dtype=torch.float).view(-1)
        if positions.shape != values.shape:
            raise RegalError(f"label: {len(positions)} positions but {len(values)} values")
        if not torch.isfinite(values).all():
            bad = positions[~torch.isfinite(values)].tolist()
            raise RegalError(f"label: non-finite values for dataset positions {bad[:10]}")
        in_pool = torch.isin(positions, self.pool)
        if not in_pool.all() or positions.unique().numel() != positions.numel():
            bad = positions[~in_pool].tolist()
            raise RegalError(f"label: positions not in the pool or repeated: {bad[:10]}")
        self.pool = self.pool[~torch.isin(self.pool, positions)]
        self.labeled = torch.cat([self.labeled, positions])
        self.labels[positions] = values

    def target_scaling(self) -> tuple[float, float]:
        """Mean and standard deviation of the labeled targets (std 1 if undefined)."""
        y = self.labels[self.labeled]
        if y.numel() == 0:
            raise RegalError("target_scaling: no labeled molecules yet")
        std = y.std(correction=0).item() if y.numel() > 1 else 0.0
        return y.mean().item(), std if std > 0 else 1.0

    def target_scaler(self, baseline: str | None = None) -> TargetScaler:
        """The target's scaling fitted on the labeled set: its mean and std
        (:meth:`target_scaling`), or with ``baseline`` (a column of the features, e.g.
        ``xtb_gap``, or of a table) the least-squares line ``y ~ a + b * baseline`` and the
        std of what it leaves (a Delta target: the model learns the residual).

        Raises:
            RegalError: no labeled molecule yet; ``baseline`` is no feature column.
        """
        if baseline is None:
            return TargetScaler(*self.target_scaling())
        index = self.feature_column(baseline, "model.baseline")
        v = self.feature_rows(self.labeled)[:, index].double()
        y = self.labels[self.labeled].double()
        if y.numel() == 0:
            raise RegalError("target_scaler: no labeled molecules yet")
        # a failed feature: the labeled molecules' mean, as the model fills it
        # (regal_torch.models.regressor.Regressor.baseline_features)
        v = torch.where(v.isnan(), v.nanmean().nan_to_num(0.0), v)
        dv = v - v.mean()
        var = dv.pow(2).mean()
        slope = (dv * (y - y.mean())).mean() / var if var > 0 else torch.zeros(())
        intercept = y.mean() - slope * v.mean()
        std = (y - intercept - slope * v).std(correction=0) if y.numel() > 1 else torch.zeros(())
        std = std.item() if std > 0 else 1.0
        return TargetScaler(intercept.item(), std, baseline=(index, slope.item()))

    @property
    def feature_names(self) -> list[str]:
        """The names of the item features: the molecule features' columns
        (``data.features``), or a table's feature columns; empty if there are none."""
        return list(self.dataset.feature_names)

    def feature_column(self, name: str, option: str) -> int:
        """The position of feature column ``name`` (named by ``option`` in errors).

        Raises:
            RegalError: no such column, naming the closest ones (or saying there are none).
        """
        names = self.feature_names
        if name in names:
            return names.index(name)
        if not names:
            raise RegalError(
                f"{option}={name!r}: this data has no features; add data.features=[...] "
                "(e.g. [xtb] for xtb_gap)"
            )
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; features: {names[:8]}"
        raise RegalError(f"{option}={name!r} is not a feature column of this data{hint}")

    def feature_rows(self, positions: Tensor) -> Tensor:
        """The item features of dataset ``positions`` (unscaled; NaN where a featurizer
        failed): the molecule features, computed first where needed, or a table's rows,
        ``[k, F]`` float32."""
        features = self.dataset.molecule_features
        if features is not None:
            features.ensure(positions.numpy())
            return torch.from_numpy(features.rows(positions.numpy()))
        return self.dataset.x[positions]

    def model_inputs(self, scaling_rows: Tensor | None = None) -> dict[str, Any]:
        """What a model built for this data is given about its inputs: ``node_dim`` and
        ``edge_dim`` (the dataset's ``num_node_features`` and ``num_edge_features``; None for
        a table); on a table, ``feature_scaling``: a :class:`FeatureScaler` fitted on the
        features of ``scaling_rows`` (``[R]`` dataset positions; None: the labeled rows); with
        molecule features (``data.features``), ``feature_groups`` (each featurizer's name and
        width, in column order) and ``feature_scaling`` fitted the same way on them.
        Every regressor takes them (and ``target_scaling``):
        ``factory(**dm.model_inputs(), target_scaling=dm.target_scaler())``."""
        inputs: dict[str, Any] = {
            "node_dim": self.dataset.num_node_features,
            "edge_dim": self.dataset.num_edge_features,
        }
        rows = self.labeled if scaling_rows is None else scaling_rows
        features = self.dataset.molecule_features
        if inputs["edge_dim"] is None:
            inputs["feature_scaling"] = FeatureScaler.fit(self.dataset.x[rows])
        elif features is not None:
            inputs["feature_groups"] = dict(features.groups)
            inputs["feature_scaling"] = FeatureScaler.fit(self.feature_rows(rows))
        return inputs

    @property
    def ids(self) -> list[str]:
        """The user's id of every dataset position (``dataset.ids``; QM9: the QM9 index)."""
        ids = self.dataset.ids
        return list(ids) if ids is not None else [str(int(i)) for i in self.mol_ids]

    @property
    def mol_ids(self) -> Tensor:
        """Provenance id of every dataset position, ``[N]``."""
        return self.dataset.mol_id.view(-1)

    def loader(self, positions: Tensor, targets: Tensor | None = None) -> DataLoader:
        """Unshuffled prediction loader over ``positions`` (with ``y`` if ``targets``)."""
        return DataLoader(
            _Molecules(self.dataset, positions, targets),
            batch_size=self.predict_batch_size,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        n = len(self.labeled)
        return DataLoader(
            _Molecules(self.dataset, self.labeled, self.labels[self.labeled]),
            batch_size=self.batch_size,
            shuffle=True,
            # A last batch holding one graph may hold one atom, which batch norm refuses.
            drop_last=n > self.batch_size and n % self.batch_size == 1,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val, self.truth[self.val])

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test, self.truth[self.test])

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.pool)


class _Molecules(Dataset):
    """The graphs (or table rows) at ``positions`` of a dataset, with ``y`` set to
    ``targets`` (or absent)."""

    def __init__(self, dataset: Dataset, positions: Tensor, targets: Tensor | None) -> None:
        self.dataset, self.positions, self.targets = dataset, positions, targets
        features = getattr(dataset, "molecule_features", None)
        if features is not None:  # computed where no store has them yet, before any batch
            features.ensure(torch.as_tensor(positions).numpy())

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> Data:
        d = self.dataset[int(self.positions[i])]
        out = Data(x=d.x, edge_index=d.edge_index, edge_attr=d.edge_attr)
        if "smiles" in d:  # models on fixed descriptors (model=gp) compute them from it
            out.smiles = d.smiles
        if "features" in d:  # the molecule features, [1, F]
            out.features = d.features
        if self.targets is not None:
            out.y = self.targets[i].view(1)
        return out


def _count(size: float, n: int, name: str) -> int:
    if size < 0:
        raise RegalError(f"data.datamodule.{name} must be >= 0; got {size}")
    return int(round(size * n)) if size < 1 else int(size)
