"""Checks of a run's options before anything is trained or written: one error line each.

:func:`check_config` looks at the options alone (types and ranges: ``loop.batch_size=abc``,
``model.dropout=1.5``, ``trainer.max_epochs=0``, a required option without a value);
:func:`check_budget` at what they ask of the data once the datamodule is built (enough
validation and test molecules, a pool large enough for the labels asked for). Every problem
is a :class:`RegalError` naming the option, its value and what is allowed.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9_tables import QM9_SIZE
from regal_torch.errors import RegalError
from regal_torch.models.capabilities import capabilities_of
from regal_torch.option_rules import Rule, choice, integer, number, switch, with_note

_ABSENT = object()


def _devices(value: Any) -> str:
    """``trainer.devices``: a count of at least 1, ``auto``, or a list of device indices."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return ""
    if isinstance(value, list | ListConfig) and value and all(isinstance(v, int) for v in value):
        return ""
    return "an integer >= 1, auto, or a list of device indices such as [0,1]"


def _size(value: Any) -> str:
    """``data.datamodule.val_size`` / ``test_size``: a fraction, or a count of at least 2
    (the loop scores calibration on validation and R² on test, both need two molecules)."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and (0 < value < 1 or (value >= 2 and float(value).is_integer())):
        return ""
    return "a fraction between 0 and 1 (exclusive) or a whole count of at least 2"


_POSITIVE_INT = integer(1)
_SEED = integer(0)

# Option -> rule; options absent from the config are not checked.
RULES: dict[str, Rule] = {
    "seed": _SEED,
    "on_unserved": choice("error", "skip"),
    "progress": choice(True, False, "auto"),
    "loop.initial_size": integer(2),
    "loop.batch_size": _POSITIVE_INT,
    "loop.rounds": integer(0),
    "loop.warm_start": switch,
    "loop.recalibrate": switch,
    "data.subset_seed": _SEED,
    "data.datamodule.val_size": _size,
    "data.datamodule.test_size": _size,
    "data.datamodule.split_seed": _SEED,
    "data.datamodule.batch_size": _POSITIVE_INT,
    "data.datamodule.predict_batch_size": _POSITIVE_INT,
    "data.datamodule.num_workers": integer(0),
    "trainer.max_epochs": with_note(
        _POSITIVE_INT, " (0 would record untrained models, -1 train without end)"
    ),
    "trainer.devices": _devices,
    "predict.interval": number(0, low_open=True, high=1),
    "predict.outputs": switch,
    "predict.every_round": switch,
    "predict.chunk_rows": _POSITIVE_INT,
}

# Options whose values only our own classes define (a data config of the user's may mean
# something else): option -> (the ``_target_`` key, the class it names, rule).
OWN_RULES: dict[str, tuple[str, str, Rule]] = {
    "data.subset": (
        "data.dataset._target_",
        "regal_torch.data.qm9.QM9Dataset",
        integer(1, QM9_SIZE, null=True),
    ),
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
    for name, rule in model_rules(cfg).items():
        _apply(cfg, f"model.{name}", rule)


def model_rules(cfg: DictConfig) -> dict[str, Rule]:
    """The ``option_rules`` the model class of ``cfg.model`` declares, merged along its bases
    (a class without them: none)."""
    target = OmegaConf.select(cfg, "model._target_", default=None)
    if not target:
        return {}
    try:
        model_class = get_class(target)
    except Exception:  # an unknown class is Hydra's to report, with its own message
        return {}
    rules: dict[str, Rule] = {}
    for klass in reversed(model_class.__mro__):
        rules.update(klass.__dict__.get("option_rules", {}))
    return rules


def _missing(node: Any, prefix: str) -> list[str]:
    """The keys of ``node`` (a container, unresolved) whose value is ``???``, in order."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in _missing(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []


def _apply(cfg: DictConfig, key: str, rule: Rule) -> None:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is _ABSENT:
        return
    allowed = rule(value)
    if allowed:
        raise RegalError(f"{key}={_show(value)} must be {allowed}")


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
    count = isinstance(k, int) and not isinstance(k, bool) and 1 <= k < len(dm.val)
    fraction = isinstance(k, float) and 0 < k < 1
    if k is not None and not (count or fraction):
        raise RegalError(
            f"loop.local_neighbours={k!r} must be null, a fraction of the validation "
            f"molecules (0 to 1) or an integer from 1 to the number of validation molecules "
            f"less one ({len(dm.val) - 1})"
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
