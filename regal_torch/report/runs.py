"""Finding finished runs under folders and reading their history and saved config.

A run directory is a folder holding ``history.csv`` and ``.hydra/config.yaml``: one run of
``python -m regal_torch.run``, or one job of a ``--multirun`` sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regal_torch.errors import RegalError
from regal_torch.neutral_keys import fingerprint, is_neutral

REQUIRED_COLUMNS = ("n_labeled", "test_mae", "test_rmse")


@dataclass(frozen=True)
class Run:
    """One finished (or partly finished) run.

    Attributes:
        path: the run directory.
        data: the ``data=`` choice (else the dataset's class name).
        strategy: the ``strategy=`` choice (else the strategy's class name).
        model: the ``model=`` choice (else the model's class name).
        target: ``data.target`` (e.g. ``gap``).
        unit: the target's unit (e.g. ``eV``); empty where unknown.
        history: ``history.csv``, one row per finished round.
        options: the run's config as flat ``dotted.key: value`` pairs (interpolations left
            unresolved), less ``seed`` and the options that do not change results, plus the
            Hydra choices of its other config groups (``loop/initial_strategy: kmeanspp``);
            the report tells apart runs of one strategy and model that differ in one of these.
    """

    path: Path
    data: str
    strategy: str
    model: str
    target: str
    unit: str
    history: pd.DataFrame
    options: dict[str, Any] = field(default_factory=dict)


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """Run directories in or anywhere under each of ``dirs``, sorted, without duplicates.

    Raises:
        RegalError: a folder does not exist, or none holds a run.
    """
    found: set[Path] = set()
    for folder in dirs:
        if not folder.is_dir():
            raise RegalError(f"{folder}: no such directory")
        found.update(
            history.parent.resolve()
            for history in folder.rglob("history.csv")
            if (history.parent / ".hydra" / "config.yaml").is_file()
        )
    if not found:
        names = ", ".join(str(folder) for folder in dirs)
        raise RegalError(f"no runs (folders with history.csv and .hydra/config.yaml) under {names}")
    return sorted(found)


def read_run(path: Path) -> Run:
    """Read one run directory.

    Data, strategy and model names come from Hydra's saved choices (``.hydra/hydra.yaml``,
    ``hydra.runtime.choices``), else from the class names of the ``_target_`` entries of
    ``.hydra/config.yaml``.

    Raises:
        RegalError: a file cannot be read, or ``history.csv`` lacks a required column or rows.
    """
    cfg = _load_yaml(path / ".hydra" / "config.yaml")
    hydra_yaml = path / ".hydra" / "hydra.yaml"
    choices = {}
    if hydra_yaml.is_file():
        choices = OmegaConf.select(_load_yaml(hydra_yaml), "hydra.runtime.choices", default={})
    target = str(OmegaConf.select(cfg, "data.target", default=""))
    history = _read_history(path / "history.csv")
    return Run(
        path=path,
        data=choices.get("data") or _class_name(cfg, "data.dataset"),
        strategy=choices.get("strategy") or _class_name(cfg, "strategy"),
        model=choices.get("model") or _class_name(cfg, "model"),
        target=target,
        unit=_unit(history),
        history=history,
        options=_options(cfg, choices),
    )


def _options(cfg: DictConfig, choices: Any) -> dict[str, Any]:
    """The run's result-changing options but its seed, flat (see :attr:`Run.options`), and
    the Hydra choices of its config groups but data, model and strategy
    (``loop/initial_strategy: kmeanspp``)."""
    groups = {
        group: choice
        for group, choice in dict(choices).items()
        if group not in ("data", "model", "strategy")
        and not group.startswith("hydra/")
        and not is_neutral(group.replace("/", "."))
    }
    options = fingerprint(cfg, resolve=False)
    options.pop("seed", None)
    return {**groups, **options}


def _unit(history: pd.DataFrame) -> str:
    """The target's unit as the run wrote it into ``history.csv`` (empty if it wrote none)."""
    if "unit" not in history.columns or history["unit"].isna().all():
        return ""
    return str(history["unit"].dropna().iloc[0])


def _load_yaml(path: Path) -> DictConfig:
    try:
        return OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as exc:
        raise RegalError(f"{path}: cannot be read ({type(exc).__name__})") from exc


def _class_name(cfg: DictConfig, group: str) -> str:
    target = OmegaConf.select(cfg, f"{group}._target_", default=None)
    if target is None:
        raise RegalError(f"{group} of the run has no _target_ and no saved Hydra choice")
    return str(target).rsplit(".", 1)[-1]


def _read_history(path: Path) -> pd.DataFrame:
    try:
        history = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RegalError(f"{path}: cannot be read as CSV ({type(exc).__name__})") from exc
    missing = [column for column in REQUIRED_COLUMNS if column not in history.columns]
    if missing:
        raise RegalError(f"{path}: missing required column(s) {', '.join(missing)}")
    if history.empty:
        raise RegalError(f"{path}: no finished rounds")
    return history
