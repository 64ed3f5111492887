"""How a run read its data, saved with its model: what reads a new file the same way.

A :class:`DataCard` holds the run's data config (resolved), the kind of data (molecules or a
table), the item features' column names, the molecule graphs' featuriser version, and the
target's name and unit. :meth:`DataCard.dataset_config` composes, with Hydra, the data config
that reads a new file as the run read its own: ``configs/data/molecules.yaml`` (or
``table.yaml``), given the run's values of its options (columns, molecule features and their
featurizers, cache folder) and then the user's (``data.smiles_column=...``). A QM9 run's new
molecules are read as a molecule file with the run's molecule features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from regal_torch.data.molecule_files import read_header
from regal_torch.errors import RegalError
from regal_torch.neutral_keys import register_resolver
from regal_torch.overrides import CONFIG_DIR, one_line

__all__ = ["DataCard"]

# The run's options that do not carry over to a new file: the file itself, the processes of
# this machine, and what only the run's own data has (its target, splits, dataset node).
_NOT_CARRIED = ("path", "num_workers", "target", "dataset", "datamodule")


@dataclass(frozen=True)
class DataCard:
    """How a run read its data (see the module docstring).

    Attributes:
        config: The run's ``data`` config, resolved.
        kind: ``molecules`` (graphs, with molecule features if any) or ``table``.
        feature_names: The item features' columns the model read (molecule features or a
            table's columns), in order.
        featurizer_version: The molecule graphs' featuriser version
            (:data:`regal_torch.data.molecule_graphs.FEATURIZER_VERSION`).
        target: The target's name.
        unit: The target's unit (may be empty).
    """

    config: dict[str, Any]
    kind: str
    feature_names: list[str]
    featurizer_version: int
    target: str
    unit: str

    @classmethod
    def of_run(
        cls, data: DictConfig, dataset: Any, target: str, unit: str, featurizer_version: int
    ) -> DataCard:
        """The card of a run whose ``data`` config built ``dataset``."""
        return cls(
            config=OmegaConf.to_container(data, resolve=True),
            kind="table" if dataset.num_edge_features is None else "molecules",
            feature_names=list(dataset.feature_names),
            featurizer_version=featurizer_version,
            target=target,
            unit=unit,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Any, where: Path) -> DataCard:
        """The card saved in the model file ``where``.

        Raises:
            RegalError: a field is missing (a damaged or foreign file).
        """
        names = [f.name for f in fields(cls)]
        if not isinstance(saved, dict) or any(name not in saved for name in names):
            missing = next(n for n in names if not isinstance(saved, dict) or n not in saved)
            raise RegalError(f"{where}: the model file has no data card entry {missing!r}")
        return cls(**{name: saved[name] for name in names})

    def dataset_config(
        self, path: str, options: dict[str, Any], engine: Sequence[str] = ()
    ) -> DictConfig:
        """The data config that reads ``path`` as the run read its data.

        Args:
            path: The new file (``data.path``).
            options: ``data.*`` options the user gave (name -> value; None: null), applied
                last. Without ``data.target_column``, the run's target column is read only
                where the file has that column.
            engine: Overrides of the engine (``engine=ray``, ``engine.address=auto``): where
                the molecule features are computed; none: ``engine=local``.

        Raises:
            RegalError: an option that is not one of the data config's, a bad engine override.
        """
        group = "table" if self.kind == "table" else "molecules"
        register_resolver()  # configs/config.yaml reads it
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cfg = compose("config", overrides=[f"data={group}", *engine])
        except HydraException as exc:
            what = f"the engine options {list(engine)}" if engine else "the data config"
            raise RegalError(f"cannot compose {what}: {one_line(exc)}") from exc
        data = cfg.data
        for key, value in self.config.items():
            if key in data and key not in _NOT_CARRIED:
                data[key] = value
        if self.kind == "table":  # the columns the model read, whatever picked them
            data.feature_columns = list(self.feature_names)
        data.path = str(path)
        for key, value in options.items():
            name = key.removeprefix("data.")
            if name not in data or name in ("dataset", "datamodule", "target"):
                known = ", ".join(f"data.{k}" for k in data if k not in _NOT_CARRIED[2:])
                raise RegalError(f"unknown option {key!r} for this run's data; it has {known}")
            data[name] = value
        header = read_header(Path(path)) if Path(path).is_file() else None
        if self.kind == "table" and header is not None:
            missing = [c for c in self.feature_names if c not in header]
            if missing:
                raise RegalError(
                    f"{path}: no column {missing[0]!r} of the run's features ({len(missing)} "
                    f"of {len(self.feature_names)} missing); the run read {self.feature_names}"
                )
        if "data.target_column" not in options:
            target = data.get("target_column")
            if target is not None and target not in (header or []):
                data.target_column = None
        return data

    def check(self, dataset: Any, path: Path) -> None:
        """Refuse a dataset read from ``path`` whose item features are not the run's.

        Raises:
            RegalError: other feature columns, naming the first difference.
        """
        ours, theirs = list(dataset.feature_names), self.feature_names
        if ours != theirs:
            raise RegalError(
                f"{path}: read into {len(ours)} feature columns, the run's model read "
                f"{len(theirs)} ({_first_difference(ours, theirs)})"
            )


def _first_difference(ours: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return f"column {i}: {a!r} here, {b!r} in the run"
    return "the run's has more" if len(theirs) > len(ours) else "this has more"
