"""The run's state checkpoint: written atomically, checked against the config on resume.

:class:`RunState` is what ``state.pt`` holds, field by field; :func:`save_state`,
:func:`read_state` and :func:`load_state` are its file format (a checksummed torch file) and
the check against the config.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, atomic_write_bytes, remove_temporaries

STATE_VERSION = 2

# Options added with a default that changes what an older run did: a state without them ran
# as these values, and resumes only with them (option -> the behaviour before it existed).
BEFORE_OPTION = {
    "data.features": [],
    "model.baseline": None,
    "model.graph": True,
    "model.fingerprint": True,
}


def _no_positions() -> torch.Tensor:
    return torch.empty(0, dtype=torch.long)


@dataclass
class RunState:
    """What a run folder's ``state.pt`` holds after a finished round.

    Attributes:
        fingerprint: The run's config less the result-neutral options
            (:func:`regal_torch.neutral_keys.fingerprint`), checked on resume.
        round: The last finished round (-1: a closed loop whose start set is being computed).
        acquired: Whether that round picked and labeled its batch (its last round did not).
        labeled: Dataset positions of the labeled molecules, in labeling order.
        labels: Their labels.
        label_rounds: The round each came in (0: the initial set).
        history: One dict of metrics per finished round (``history.csv``'s rows).
        pending: Learn mode: picks awaiting their labels, or None.
        weights: ``loop.warm_start``: the last round's ``state_dict``, or None.
        failed, failed_rounds, failed_reasons: Learn mode: picks whose calculation failed,
            the round they were picked in, and why.
        holdout: A closed loop: the validation and test positions and every label as the
            oracle left them (``val``, ``test``, ``truth``), or None.

    Shapes:
        labeled, labels, label_rounds: ``[L]``; pending: ``[k]``; failed, failed_rounds:
        ``[F]``; holdout ``truth``: ``[N]``.
    """

    fingerprint: dict[str, Any]
    round: int
    acquired: bool
    labeled: torch.Tensor
    labels: torch.Tensor
    label_rounds: torch.Tensor
    history: list[dict[str, Any]]
    pending: torch.Tensor | None = None
    weights: dict[str, torch.Tensor] | None = None
    failed: torch.Tensor = field(default_factory=_no_positions)
    failed_rounds: torch.Tensor = field(default_factory=_no_positions)
    failed_reasons: list[str] = field(default_factory=list)
    holdout: dict[str, torch.Tensor] | None = None

    def save(self, path: Path) -> None:
        """Checkpoint to ``path`` atomically (:func:`save_state`)."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        holdout = state.pop("holdout")
        if holdout is not None:  # stored as top-level keys, as states have always been
            state.update(holdout)
        save_state(path, state)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RunState:
        """The state read from a file (:func:`read_state`); keys that states written by older
        versions lack take their defaults."""
        known = {f.name for f in fields(cls)} - {"holdout"}
        chosen = {key: value for key, value in state.items() if key in known}
        if "val" in state:
            chosen["holdout"] = {key: state[key] for key in ("val", "test", "truth")}
        return cls(**chosen)

    @classmethod
    def read(cls, path: Path) -> RunState:
        """The state at ``path``, unchecked against any config (:func:`read_state`)."""
        return cls.from_dict(read_state(path))

    @classmethod
    def load(
        cls,
        path: Path,
        fingerprint: dict[str, Any],
        effect: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> RunState | None:
        """The state at ``path`` checked against ``fingerprint``, or None if there is none
        (:func:`load_state`)."""
        state = load_state(path, fingerprint, effect)
        return None if state is None else cls.from_dict(state)


def option_effects(n_pool: int) -> dict[str, Callable[[Any], Any]]:
    """What options whose value may change without effect do on a run whose pool had
    ``n_pool`` molecules before round 0 (:func:`load_state`'s ``effect``): ``loop.candidates``
    of at least the pool's size does what null does, so a run resumes under either."""
    return {"loop.candidates": lambda m: None if m is None or m >= n_pool else m}


# Fingerprint entries the loop adds that are no options (what a run of a computed oracle
# resumes from is the loop's to check, not an option newer than the run).
NOT_OPTIONS = ("n_molecules", "oracle_computes")

# What every state holds (the fields of RunState without a default).
REQUIRED_KEYS = tuple(
    f.name for f in fields(RunState) if f.default is MISSING and f.default_factory is MISSING
)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Checkpoint ``state`` (tensors, numbers, strings, lists and dicts of them) atomically.

    The file is a torch file ``{"version": 2, "sha256": HEX, "payload": BYTES}``: ``payload``
    (a ``uint8`` tensor) is ``state`` as :func:`torch.save` writes it and ``sha256`` its digest,
    so that :func:`read_state` notices any damaged byte.
    """
    inner = io.BytesIO()
    torch.save(state, inner)
    payload = inner.getvalue()
    outer = io.BytesIO()
    torch.save(
        {
            "version": STATE_VERSION,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
        },
        outer,
    )
    atomic_write_bytes(path, outer.getvalue(), RUN_HINT)


def read_state(path: Path) -> dict[str, Any]:
    """The state at ``path``, unchecked against any config.

    A state of format 1 (written before states carried a checksum) is read as it is, without a
    check of its bytes, and the run's next checkpoint writes it in the current format.

    Raises:
        RegalError: the file is corrupt or truncated (unreadable, checksum mismatch, a key of
            :data:`REQUIRED_KEYS` missing) or of an unknown format version.
    """
    try:
        state = torch.load(path, weights_only=True)
        if not isinstance(state, dict):
            raise _Damaged("not a dict")
        version = state["version"]
        if not isinstance(version, int):
            raise _Damaged("version is not an int")
        if version == STATE_VERSION:
            state = _unpack(state)
    except Exception as exc:  # any failure to read means the file cannot be trusted
        reason = str(exc) if isinstance(exc, _Damaged) else type(exc).__name__
        raise _corrupt(path, reason) from exc
    if version not in (1, STATE_VERSION):
        raise RegalError(
            f"{path}: state format {version!r} is unknown to this regal_torch (it reads "
            f"{STATE_VERSION}): the file is corrupt, or a newer regal_torch wrote it"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing or not isinstance(state["fingerprint"], dict):
        raise _corrupt(path, f"no {missing[0]!r}" if missing else "fingerprint is not a dict")
    return state


def _unpack(outer: dict[str, Any]) -> dict[str, Any]:
    """The state inside a current-format file, once its checksum matches."""
    payload = outer["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != outer["sha256"]:
        raise _Damaged("checksum mismatch")
    state = torch.load(io.BytesIO(payload), weights_only=True)
    if not isinstance(state, dict):
        raise _Damaged("not a dict")
    return state


class _Damaged(Exception):
    """A state file that loads but is not what :func:`save_state` wrote."""


def _corrupt(path: Path, reason: str) -> RegalError:
    return RegalError(
        f"{path}: state file is corrupt or truncated ({reason}); "
        "move it away to start this run over"
    )


def load_state(
    path: Path,
    fingerprint: dict[str, Any],
    effect: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, Any] | None:
    """The state at ``path``, or None if there is none.

    ``effect`` maps an option to a function of its value that returns what the value does on
    this run (for example ``loop.candidates`` of at least the pool's size does what null does);
    the state and the config are compared on that, so an option whose change has no effect on
    this run does not block the resume.

    Temporary files that a killed writer (:func:`regal_torch.files.atomic_write_bytes`) left in
    the folder, and in its ``queries/`` folder, are removed once the state is accepted (the
    files they were to replace are intact), so a refused state leaves the folder as it was;
    the caller holds the folder's lock (:mod:`regal_torch.lock`), so no other process is
    writing them. Options the state does not know (added to
    regal_torch or to the config after the run started; a new option's default keeps the old
    behaviour) do not block the resume: they are named in one line on stderr and the run goes
    on with their current values, except those of :data:`BEFORE_OPTION` set to something
    other than what the run did before they existed. An option the state has and the config
    lacks does.

    Raises:
        RegalError: the file is corrupt or truncated, or was written by a run whose
            config differs from ``fingerprint`` (other dataset, model, strategy, ...).
    """
    path = Path(path)
    if not path.exists():
        _remove_temporaries(path.parent)
        return None
    state = read_state(path)
    saved = state["fingerprint"]
    effect = effect or {}

    def differs(key: str) -> bool:
        if key not in fingerprint or key not in effect:
            return fingerprint.get(key) != saved[key]
        return effect[key](fingerprint[key]) != effect[key](saved[key])

    older = [
        key
        for key in sorted(set(BEFORE_OPTION) & set(fingerprint) - set(saved))
        if fingerprint[key] != BEFORE_OPTION[key]
    ]
    if older:
        key = older[0]
        value = _cli(BEFORE_OPTION[key])
        raise RegalError(
            f"{path}: the run started before {key} existed, so it ran as {key}={value}; "
            f"add {key}={value} to resume it (or use another hydra.run.dir)"
        )
    diff = [key for key in sorted(saved) if differs(key)]
    if diff:
        shown = "; ".join(
            f"{k}: state has {saved.get(k)!r}, config has {fingerprint.get(k)!r}" for k in diff[:3]
        )
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise RegalError(
            f"{path}: state was written by another config ({shown}{more}); "
            "use another hydra.run.dir, or the original options to resume"
        )
    newer = sorted(set(fingerprint) - set(saved) - set(NOT_OPTIONS))
    new = [f"{key}={fingerprint[key]!r}" for key in newer]
    if new:
        print(
            f"{path}: the run started before these options existed; resuming with "
            + ", ".join(new),
            file=sys.stderr,
            flush=True,
        )
    _remove_temporaries(path.parent)
    return state


def _cli(value: Any) -> str:
    """A value as written on the command line (``[]``, ``null``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _remove_temporaries(run_dir: Path) -> None:
    """What killed writers left in the run folder and its ``queries/`` folder."""
    for folder in (run_dir, run_dir / "queries"):
        remove_temporaries(folder, every=True)
