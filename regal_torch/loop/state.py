"""The run's state checkpoint: written atomically, checked against the config on resume."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from regal_torch.errors import RegalError

STATE_VERSION = 1


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so a reader sees the old file or the new, never a mix.

    Temporary file in the same folder, flush, fsync, ``os.replace``, then fsync the folder.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Checkpoint ``state`` (tensors, numbers, strings, lists and dicts of them) atomically."""
    buffer = io.BytesIO()
    torch.save({"version": STATE_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_state(path: Path) -> dict[str, Any]:
    """The state at ``path``, unchecked against any config.

    Raises:
        RegalError: the file is corrupt, truncated or of another format version.
    """
    try:
        state = torch.load(path, weights_only=True)
        version = state["version"]
    except Exception as exc:  # any failure to read means the file cannot be trusted
        raise RegalError(
            f"{path}: state file is corrupt or truncated ({type(exc).__name__}); "
            "move it away to start this run over"
        ) from exc
    if version != STATE_VERSION:
        raise RegalError(f"{path}: state format {version}, this regal_torch reads {STATE_VERSION}")
    return state


def load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The state at ``path``, or None if there is none.

    Temporary files that a killed :func:`atomic_write_bytes` left in the folder are removed
    (the files they were to replace are intact). Options the state does not know (added to
    regal_torch or to the config after the run started; a new option's default keeps the old
    behaviour) do not block the resume: they are named in one line on stderr and the run goes
    on with their current values. An option the state has and the config lacks does.

    Raises:
        RegalError: the file is corrupt or truncated, or was written by a run whose
            config differs from ``fingerprint`` (other dataset, model, strategy, ...).
    """
    path = Path(path)
    for stale in path.parent.glob(".*.tmp"):
        stale.unlink()
    if not path.exists():
        return None
    state = read_state(path)
    saved = state["fingerprint"]
    diff = [key for key in sorted(saved) if fingerprint.get(key) != saved[key]]
    if diff:
        shown = "; ".join(
            f"{k}: state has {saved.get(k)!r}, config has {fingerprint.get(k)!r}" for k in diff[:3]
        )
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise RegalError(
            f"{path}: state was written by another config ({shown}{more}); "
            "use another hydra.run.dir, or the original options to resume"
        )
    new = [f"{key}={fingerprint[key]!r}" for key in sorted(set(fingerprint) - set(saved))]
    if new:
        print(
            f"{path}: the run started before these options existed; resuming with "
            + ", ".join(new),
            file=sys.stderr,
            flush=True,
        )
    return state
