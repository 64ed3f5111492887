"""How regal_torch writes files: whole or not at all, and caches built once.

Every file regal_torch writes (states, tables, query files, models, predictions, caches) goes
through this module, which imports neither torch nor any other part of regal_torch but its
error type:

- :func:`atomic_write_bytes` and :func:`write_csv`: a reader sees the old file or the new,
  never a mix (a temporary file in the same folder, synced, then renamed over the target);
  :func:`remove_temporaries` removes what a killed writer left;
- :func:`write_synced`: a file of a folder that becomes visible only later (a cache being
  built), synced before it counts;
- :func:`one_builder`, :func:`partial_folder` and :func:`publish`: a cache folder is built
  under another name by one process among those that need it at once, then renamed into
  place, so it appears complete or not at all.

A temporary file is named ``.NAME.HOST-PID-RANDOM.tmp`` after the process writing it, so a
later process can tell a dead writer's leftover from a file being written right now.
"""

from __future__ import annotations

import fcntl
import glob
import io
import logging
import os
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from regal_torch.errors import RegalError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RUN_HINT",
    "alive",
    "atomic_write_bytes",
    "one_builder",
    "partial_folder",
    "publish",
    "remove_temporaries",
    "write_csv",
    "write_synced",
]

log = logging.getLogger(__name__)

_FOREIGN_TEMPORARY_SECONDS = 24 * 3600  # another host's leftover counts as dead after a day

# The hint of a run folder's files (states, tables, query files, outputs) that cannot be written.
RUN_HINT = "; the finished rounds are kept: fix the folder's permissions or space and re-run"


def atomic_write_bytes(path: Path, payload: bytes, hint: str = "") -> None:
    """Write ``payload`` to ``path`` so a reader sees the old file or the new, never a mix.

    Temporary file in the same folder, flush, fsync, ``os.replace``, then fsync the folder.
    The file gets the mode a plain ``open(path, "wb")`` would give it: that of the file it
    replaces, else ``0o666`` less the umask (e.g. ``0o644``), so a group sharing the folder can
    read it.

    Args:
        path: The file to write.
        payload: Its new content.
        hint: Said after the reason when it cannot be written (what is kept, what to do).

    Raises:
        RegalError: the file cannot be written (permissions, space, a missing folder).
    """
    path = Path(path)
    try:
        _write_replacing(path, payload)
    except OSError as exc:
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        raise RegalError(f"{path}: cannot write it ({reason}){hint}") from exc


def write_csv(path: Path, frame: pd.DataFrame, hint: str = "") -> None:
    """Write ``frame`` (without its index) as the CSV file ``path``, atomically
    (:func:`atomic_write_bytes`)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue().encode(), hint)


def _write_replacing(path: Path, payload: bytes) -> None:
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            except FileNotFoundError:
                pass  # a new file: the mode the umask left
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


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file ``.NAME.HOST-PID-RANDOM.tmp`` next to ``path``, opened for writing, created
    with mode ``0o666`` so that the kernel applies the umask (``tempfile.mkstemp`` gives
    ``0o600``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    owner = f"{socket.gethostname()}-{os.getpid()}"
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{owner}-{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def remove_temporaries(folder: Path, every: bool = False) -> None:
    """Remove the temporary files (``.*.tmp``) that killed writers left in ``folder``.

    Args:
        folder: Where to look (not below it).
        every: Remove every one: the caller holds the folder's lock, so nobody writes there
            now (a run folder). Otherwise only those of processes no longer alive on this
            host, those of other hosts older than a day, and unnamed ones older than a day.
    """
    host = socket.gethostname()
    now = time.time()
    for stale in Path(folder).glob(".*.tmp"):
        if not every:
            owner = stale.name[: -len(".tmp")].rsplit(".", 1)[-1].rsplit("-", 2)
            try:
                old = now - stale.stat().st_mtime > _FOREIGN_TEMPORARY_SECONDS
            except FileNotFoundError:
                continue  # its writer renamed it meanwhile
            ours = len(owner) == 3 and owner[0] == host and owner[1].isdigit()
            if (ours and alive(int(owner[1]))) or (not ours and not old):
                continue
        stale.unlink(missing_ok=True)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (a file of a folder not yet published)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def one_builder(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.NAME.lock`` beside the cache ``folder`` while it is
    built, so that processes starting together build it once and the others reuse it; a lock
    that cannot be taken (a file system without locks) only costs a second build, which the
    builder's atomic rename (:func:`publish`) settles."""
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


def partial_folder(folder: Path) -> Path:
    """A new, empty ``NAME.partial-HOST-PID`` beside ``folder`` to build it in; the partial
    folders that dead processes of this host left for it are removed first.

    Raises:
        OSError: the parent folder cannot be created or written.
    """
    host = socket.gethostname()
    folder.parent.mkdir(parents=True, exist_ok=True)
    for old in folder.parent.glob(f"{glob.escape(folder.name)}.partial-{host}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    partial = folder.with_name(f"{folder.name}.partial-{host}-{os.getpid()}")
    partial.mkdir()
    return partial


def publish(partial: Path, folder: Path, marker: str) -> None:
    """Rename the complete ``partial`` folder to ``folder``; if another process published
    ``folder`` meanwhile (its ``marker`` file exists), remove ``partial`` instead.

    Raises:
        OSError: the rename failed and ``folder`` is not complete.
    """
    try:
        partial.rename(folder)
    except OSError:
        if not (folder / marker).is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
