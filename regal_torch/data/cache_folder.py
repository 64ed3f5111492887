"""What every on-disk cache of regal_torch shares: one builder among processes that start
together, files synced before they count, leftovers of dead builders removed, and the cores a
build may use.

A cache is a folder that appears complete or not at all: it is built under another name and
renamed into place (an atomic step). :func:`one_builder` makes processes that need the same
cache at the same time (the SLURM tasks of one DDP run) build it once.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["alive", "available_cpus", "one_builder", "write_synced"]

log = logging.getLogger(__name__)


@contextmanager
def one_builder(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.NAME.lock`` beside the cache ``folder`` while it is
    built, so that processes starting together build it once and the others reuse it; a lock
    that cannot be taken (a file system without locks) only costs a second build, which the
    builder's atomic rename settles."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder.parent / f".{folder.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: waiting for another process that builds it", folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks, e.g. under SLURM)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
