"""Checks of a run's options before anything is trained or written: one error line each.

:func:`check_config` looks at the options alone (types and ranges: ``loop.batch_size=abc``,
``model.dropout=1.5``, ``model.regularizer=inf``, ``trainer.max_epochs=0``, a required option
without a value) and at what the model reads (``model.baseline`` among the feature columns
the featurizers' ``use`` lists name, a GP with neither fingerprint nor features), before the
dataset or its features are built; :func:`check_budget` at what they ask of the data once the
datamodule is built (enough validation and test molecules, a pool large enough for the labels
asked for). Every problem is a :class:`RegalError` naming the option, its value and what is
allowed.
"""

from __future__ import annotations

import difflib
import logging
import math
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9_tables import QM9_SIZE
from regal_torch.errors import RegalError, regal_cause
from regal_torch.features.molecule_features import check_names
from regal_torch.models.capabilities import capabilities_of
from regal_torch.models.gp import FingerprintGP
from regal_torch.option_rules import Rule, choice, integer, number, switch, with_note
from regal_torch.uncertainty.conformal import too_few_warning

log = logging.getLogger(__name__)

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
    "data.num_workers": integer(0, null=True),
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
    "engine.workers": (
        "engine._target_",
        "regal_torch.engine.local.LocalEngine",
        integer(0, null=True),
    ),
    "engine.num_cpus": (
        "engine._target_",
        "regal_torch.engine.ray_engine.RayEngine",
        integer(1, null=True),
    ),
}


def check_config(cfg: DictConfig) -> None:
    """Refuse, before any training, an option of the wrong type or out of range.

    Checks that every required option (``???`` in the configs, e.g. ``data.path`` of
    ``data=molecules``) has a value, and the type and range of the numeric and switch options
    of ``seed``, ``loop``, ``data`` (``subset``, ``datamodule``), ``model`` (those each model
    config has) and ``trainer.max_epochs`` (no option takes inf or nan); then what the model
    reads (:func:`check_inputs`). What depends on the data is left to :func:`check_budget`;
    strategy options are checked by the strategies.

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
    check_inputs(cfg)


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


def check_inputs(cfg: DictConfig) -> None:
    """Refuse, from the config alone (no dataset built, no feature computed), inputs the model
    cannot have: a ``model.baseline`` that is not one of the feature columns the featurizers of
    ``data.features`` give (their ``use`` lists; a table's columns are checked by
    :func:`check_budget`), and ``model=gp model.fingerprint=false`` on molecules without
    features. ``data.features`` given as one name (``data.features=minimol``) is taken as the
    list of that name, and written back into ``cfg`` as such.

    Raises:
        RegalError: one line naming the option, its value and what to change.
    """
    features = _feature_names(cfg)
    baseline = OmegaConf.select(cfg, "model.baseline", default=None)
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise RegalError(
            f"model.baseline={_show(baseline)} must be null or the name of one feature column, "
            "such as xtb_gap"
        )
    if features is None:  # not molecules with featurizers (a table)
        return
    if baseline is not None:
        _check_baseline(cfg, baseline, features)
    if not features and OmegaConf.select(cfg, "model.fingerprint", default=True) is False:
        target = OmegaConf.select(cfg, "model._target_", default=None)
        try:
            gp = target is not None and issubclass(get_class(target), FingerprintGP)
        except Exception:  # an unknown class is Hydra's to report
            gp = False
        if gp:
            raise RegalError(
                "model.fingerprint=false leaves the GP the molecule features alone, and "
                "data.features is empty: add data.features=[...] (e.g. [minimol])"
            )


def _feature_names(cfg: DictConfig) -> list[str] | None:
    """``data.features`` as a list of featurizer names (a single name: a list of it, written
    back; null: none), checked against ``data.featurizers``; None for data without
    featurizers.

    Raises:
        RegalError: not a list of names, a name without a featurizer, a name given twice.
    """
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "features" not in data or "featurizers" not in data:
        return None
    value = data.features
    if value is None:
        return []
    if isinstance(value, str):  # data.features=minimol
        data.features = [value]
        value = data.features
    if not isinstance(value, ListConfig) or not all(isinstance(v, str) for v in value):
        raise RegalError(
            f"data.features={_show(value)} must be a list of featurizer names, such as "
            "[minimol, xtb], or []"
        )
    names = list(value)
    check_names(names, data.featurizers or {})
    return names


def _featurizer(cfg: DictConfig, name: str) -> Any:
    """The featurizer ``data.featurizers.NAME`` (built from its config: cheap, it computes
    nothing until asked).

    Raises:
        RegalError: its ``use`` names a column it does not compute (its own message).
    """
    try:
        return instantiate(cfg.data.featurizers[name])
    except InstantiationException as exc:
        raise regal_cause(exc) or exc from None


def _check_baseline(cfg: DictConfig, baseline: str, features: list[str]) -> None:
    """``model.baseline`` is one of the columns of the featurizers ``features``; if not, the
    error says what gives it: the featurizer to add to ``data.features``, the column to add to
    a featurizer's ``use``, or the columns there are."""
    chosen = {name: _featurizer(cfg, name) for name in features}
    columns = [column for f in chosen.values() for column in f.names]
    if baseline in columns:
        return
    option = f"model.baseline={baseline!r}"
    for name, node in (cfg.data.featurizers or {}).items():
        if not baseline.startswith(f"{name}_") or not isinstance(node, DictConfig):
            continue
        column = baseline[len(name) + 1 :]
        if name in chosen:
            if column in chosen[name].columns:
                raise RegalError(
                    f"{option}: data.featurizers.{name}.use={_listed(chosen[name].use)} "
                    f"leaves the column {column} out: add {column} to it"
                )
            continue
        try:
            computes = column in get_class(node._target_).columns
        except Exception:  # not a featurizer class: the general message below
            computes = False
        if computes:
            raise RegalError(
                f"{option}: the baseline column {baseline} needs the {name} featurizer: add "
                f"{name} to data.features (data.features={_listed([*features, name])})"
            )
    if not columns:
        raise RegalError(
            f"{option}: data.features is empty, so there are no feature columns; add "
            "data.features=[...] (e.g. [xtb] for xtb_gap)"
        )
    close = [c for c in columns if c.endswith(f"_{baseline}")]
    close = close or difflib.get_close_matches(baseline, columns, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else _shown_columns(chosen)
    listed = _listed(features)
    raise RegalError(f"{option} is not a feature column of data.features={listed}; {hint}")


def _listed(names: Any) -> str:
    """Names as a list is written on the command line: ``[minimol, xtb]``."""
    return f"[{', '.join(map(str, names))}]"


def _shown_columns(featurizers: dict[str, Any]) -> str:
    """The columns of ``featurizers``, long groups shortened (``minimol_0 .. minimol_511``)."""
    shown = []
    for f in featurizers.values():
        names = f.names
        shown.append(f"{names[0]} .. {names[-1]}" if len(names) > 12 else ", ".join(names))
    return f"the columns are {', '.join(shown)}"


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
    if isinstance(value, float) and not math.isfinite(value):  # no option takes inf or nan
        described = allowed or rule(None)  # what a number rule allows: "a number >= 0"
        if described.startswith("a number"):
            allowed = f"a finite number{described[len('a number') :]}"
        else:  # an integer rule's own words ("an integer >= 1")
            allowed = described or "a finite number"
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
    ``loop.batch_size``; ``model.baseline`` a feature column of the data (a table's columns
    are known only now). Benchmark mode: the pool holds ``initial_size + rounds x batch_size``
    molecules. Learn mode: the pool (the molecules without a label) is not empty and holds a
    batch. Too few validation molecules for a finite ``predict.interval`` are a warning
    (:func:`regal_torch.uncertainty.conformal.too_few_warning`), logged once per run.

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
    baseline = cfg.model.get("baseline")
    if baseline is not None:
        dm.feature_column(baseline, "model.baseline")
    interval = cfg.get("predict", {}).get("interval")
    warning = too_few_warning(interval, len(dm.val)) if interval is not None else None
    if warning:
        log.warning(warning)
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
