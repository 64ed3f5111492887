"""Checks of a run's options before anything is trained or written: one error line each.

:func:`check_config` looks at the options alone (types and ranges: ``loop.batch_size=abc``,
``model.dropout=1.5``, ``trainer.max_epochs=0``, a required option without a value);
:func:`check_budget` at what they ask of the data once the datamodule is built (enough
validation and test molecules, a pool large enough for the labels asked for). Every problem
is a :class:`RegalError` naming the option, its value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9_tables import QM9_SIZE
from regal_torch.errors import RegalError
from regal_torch.models.capabilities import capabilities_of

_ABSENT = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(low: int, high: int | None = None, null: bool = False) -> Callable[[Any], str]:
    """An integer from ``low`` (to ``high``), or also null; returns what is allowed if not."""

    def rule(value: Any) -> str:
        if value is None and null:
            return ""
        if _is_int(value) and value >= low and (high is None or value <= high):
            return ""
        allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        return f"null or {allowed}" if null else allowed

    return rule


def _number(low: float, low_open: bool, high: float | None = None) -> Callable[[Any], str]:
    """A number above (or from) ``low`` and below ``high``."""

    def rule(value: Any) -> str:
        if _is_number(value) and (value > low if low_open else value >= low):
            if high is None or value < high:
                return ""
        if high is not None:
            return f"a number from {low:g} up to, not including, {high:g}"
        return f"a number {'>' if low_open else '>='} {low:g}"

    return rule


def _choice(*allowed: str) -> Callable[[Any], str]:
    return lambda value: "" if value in allowed else f"one of {', '.join(allowed)}"


def _switch(value: Any) -> str:
    return "" if isinstance(value, bool) else "true or false"


def _size(value: Any) -> str:
    """``data.datamodule.val_size`` / ``test_size``: a fraction, or a count of at least 2
    (the loop scores calibration on validation and R² on test, both need two molecules)."""
    if _is_number(value) and (0 < value < 1 or (value >= 2 and float(value).is_integer())):
        return ""
    return "a fraction between 0 and 1 (exclusive) or a whole count of at least 2"


_POSITIVE_INT = _integer(1)
_SEED = _integer(0)

# Option -> rule; options absent from the config are not checked.
RULES: dict[str, Callable[[Any], str]] = {
    "seed": _SEED,
    "on_unserved": _choice("error", "skip"),
    "loop.initial_size": _integer(2),
    "loop.batch_size": _POSITIVE_INT,
    "loop.rounds": _integer(0),
    "loop.warm_start": _switch,
    "loop.recalibrate": _switch,
    "data.subset_seed": _SEED,
    "data.datamodule.val_size": _size,
    "data.datamodule.test_size": _size,
    "data.datamodule.split_seed": _SEED,
    "data.datamodule.batch_size": _POSITIVE_INT,
    "data.datamodule.predict_batch_size": _POSITIVE_INT,
    "data.datamodule.num_workers": _integer(0),
    "model.hidden_dim": _POSITIVE_INT,
    "model.num_layers": _POSITIVE_INT,
    "model.feature_dim": _POSITIVE_INT,
    "model.members": _integer(2),
    "model.mc_samples": _integer(2),
    "model.dropout": _number(0, low_open=False, high=1),
    "model.lr": _number(0, low_open=True),
    "model.gp_lr": _number(0, low_open=True),
    "model.weight_decay": _number(0, low_open=False),
    "model.exact_max": _integer(0, null=True),
    "model.inducing_points": _POSITIVE_INT,
    "model.radius": _integer(0),
    "model.fp_size": _POSITIVE_INT,
    "model.fit_iters": _POSITIVE_INT,
    "trainer.max_epochs": _POSITIVE_INT,
    "predict.interval": _number(0, low_open=True, high=1),
    "predict.every_round": _switch,
    "predict.chunk_rows": _POSITIVE_INT,
}

# Options whose values only our own classes define (a data or model config of the user's may
# mean something else): option -> (the ``_target_`` key, the class it names, rule).
OWN_RULES: dict[str, tuple[str, str, Callable[[Any], str]]] = {
    "data.subset": (
        "data.dataset._target_",
        "regal_torch.data.qm9.QM9Dataset",
        _integer(1, QM9_SIZE, null=True),
    ),
    "model.pooling": ("model._target_", "regal_torch.models.", _choice("mean", "sum", "max")),
    "model.kernel": ("model._target_", "regal_torch.models.dkl.", _choice("rbf", "matern")),
}

_NOTES = {
    "trainer.max_epochs": " (0 would record untrained models, -1 train without end)",
    "model.mc_samples": " (a variance needs two dropout samples)",
    "model.members": " (a variance needs two members)",
}


def check_config(cfg: DictConfig) -> None:
    """Refuse, before any training, an option of the wrong type or out of range.

    Checks that every required option (``???`` in the configs, e.g. ``data.path`` of
    ``data=molecules``) has a value, and the type and range of the numeric and switch options
    of ``seed``, ``loop``, ``data`` (``subset``, ``datamodule``), ``model`` (those each model
    config has) and ``trainer.max_epochs``. What depends on the data is left to
    :func:`check_budget`; strategy options are checked by the strategies.

    Raises:
        RegalError: one line, ``OPTION=VALUE must be ALLOWED``.
    """
    missing = _missing(OmegaConf.to_container(cfg, resolve=False), "")
    if missing:
        hint = ""
        if missing[0] == "data.path":
            table = str(OmegaConf.select(cfg, "data.dataset._target_")).endswith("TableDataset")
            hint = " (a .csv file)" if table else " (a .csv, .smi or .sdf file, optionally .gz)"
        raise RegalError(f"{missing[0]} has no value and is required: add {missing[0]}=...{hint}")
    for key, rule in RULES.items():
        _apply(cfg, key, rule)
    for key, (target_key, ours, rule) in OWN_RULES.items():
        if str(OmegaConf.select(cfg, target_key, default="")).startswith(ours):
            _apply(cfg, key, rule)


def _missing(node: Any, prefix: str) -> list[str]:
    """The keys of ``node`` (a container, unresolved) whose value is ``???``, in order."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in _missing(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []


def _apply(cfg: DictConfig, key: str, rule: Callable[[Any], str]) -> None:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is _ABSENT:
        return
    allowed = rule(value)
    if allowed:
        raise RegalError(f"{key}={_show(value)} must be {allowed}{_NOTES.get(key, '')}")


def _show(value: Any) -> str:
    """A value as it is written on the command line (``null``, ``true``, ``'abc'``, ``2.5``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


class Unserved(RegalError):
    """A strategy that asks the model for what it does not provide (``experiment=compare``,
    ``on_unserved=skip``, leaves such a run out instead)."""


def check_capabilities(cfg: DictConfig, strategy: Any, initial_strategy: Any) -> None:
    """Refuse, from the config alone, a strategy (or initial strategy) that needs a
    ``Prediction`` field the model does not provide, and a cold start on an untrained model
    that cannot predict untrained (:mod:`regal_torch.models.capabilities`; a model class
    without a declaration is not checked).

    Raises:
        Unserved: one line naming the strategy, the field, and what the model provides.
    """
    model_class = get_class(cfg.model._target_)
    declared = capabilities_of(model_class)
    if declared is None:
        return
    named = [("strategy", strategy)]
    if cfg.loop.get("initial_features", "model") == "model":
        named.append(("loop/initial_strategy", initial_strategy))
    for option, chosen in named:
        missing = [f for f in chosen.requires if f not in declared.provides]
        if missing:
            raise Unserved(
                f"{option} {type(chosen).__name__} needs Prediction.{missing[0]}, which model "
                f"{model_class.__name__} does not provide (it provides {declared.describe()})"
            )
    if named[-1][0] == "loop/initial_strategy" and initial_strategy.requires:
        if not declared.predicts_untrained:
            raise Unserved(
                f"loop.initial_features=model needs a model that predicts untrained, which "
                f"{model_class.__name__} does not; use loop.initial_features=fingerprint"
            )


def check_budget(cfg: DictConfig, dm: ActiveDataModule, learn: bool) -> None:
    """Refuse options that ask more of the data than it holds (after :func:`check_config`).

    At least 2 validation and 2 test molecules; ``loop.local_neighbours`` below the
    validation size and with ``loop.recalibrate``; ``loop.candidates`` at least
    ``loop.batch_size``. Benchmark mode: the pool holds ``initial_size + rounds x batch_size``
    molecules. Learn mode: the pool (the molecules without a label) is not empty and holds a
    batch.

    Raises:
        RegalError: one line naming the options and the counts.
    """
    loop, pool = cfg.loop, len(dm.pool)
    if len(dm.val) < 2:
        raise RegalError(
            f"data.datamodule.val_size leaves {len(dm.val)} validation molecules; "
            "the loop needs at least 2 to recalibrate and score uncertainty"
        )
    if len(dm.test) < 2:
        raise RegalError(
            f"data.datamodule.test_size leaves {len(dm.test)} test molecules; "
            "the loop needs at least 2 to score the model"
        )
    k = loop.get("local_neighbours")
    if k is not None and not (isinstance(k, int) and 1 <= k < len(dm.val)):
        raise RegalError(
            f"loop.local_neighbours={k!r} must be null or an integer from 1 to the number "
            f"of validation molecules less one ({len(dm.val) - 1})"
        )
    if k is not None and not loop.recalibrate:
        raise RegalError("loop.local_neighbours needs loop.recalibrate=true")
    m = loop.get("candidates")
    if m is not None and not (isinstance(m, int) and m >= loop.batch_size):
        raise RegalError(
            f"loop.candidates={m!r} must be null or an integer of at least loop.batch_size "
            f"({loop.batch_size})"
        )
    if learn:  # the labeled rows are the initial set; unfilled picks return to the pool
        unlabeled = int(torch.isnan(dm.truth[dm.pool]).sum())
        if unlabeled == 0:
            raise RegalError("mode=learn: the pool is empty (every molecule has a label)")
        if loop.batch_size > unlabeled and loop.rounds > 0:
            raise RegalError(
                f"loop.batch_size ({loop.batch_size}) is larger than the pool "
                f"({unlabeled} molecules without a label)"
            )
        return
    need = loop.initial_size + loop.rounds * loop.batch_size
    if need > pool:
        raise RegalError(
            f"loop.initial_size ({loop.initial_size}) + loop.rounds ({loop.rounds}) x "
            f"loop.batch_size ({loop.batch_size}) = {need} labels, but the pool holds "
            f"only {pool} molecules"
        )
