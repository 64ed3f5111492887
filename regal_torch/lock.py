"""One process per run folder: an exclusive ``flock`` on ``<run>/.lock`` for the run's lifetime.

The kernel drops the lock when its holder exits, killed or not, so a stale lock file never
blocks a later run. The file stays empty and is never written: a second process, refused,
changes nothing in the folder, and learns the holder's process id from the kernel
(``/proc/locks`` on Linux).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path

from regal_torch.errors import RegalError

LOCK_NAME = ".lock"


class RunLock:
    """The exclusive lock of one run folder.

    Args:
        run_dir: The run folder (created, with its parents, by :meth:`acquire` if need be).

    Attributes:
        created: whether :meth:`acquire` created the lock file (a refused run removes it again
            with ``release(remove=True)``, leaving the folder as it found it).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.created = False
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or fail at once without changing anything in the folder.

        Raises:
            RegalError: another process holds it (``DIR is in use by process N``).
        """
        for _ in range(10):  # retried while a releasing holder removes the file under us
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd, created = self._open()
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f"process {holder}" if holder else "another process"
                    raise RegalError(f"{self.run_dir} is in use by {who}") from None
                print(
                    f"{self.run_dir}: cannot lock {self.path} ({exc.strerror}); "
                    "going on without protection against a second process in this folder",
                    file=sys.stderr,
                    flush=True,
                )
                return
            if self._same_file(fd):
                self._fd, self.created = fd, created
                return
            os.close(fd)  # the file we locked was removed meanwhile: lock the new one
        raise RegalError(f"{self.run_dir}: could not lock {self.path}")

    def release(self, remove: bool = False) -> None:
        """Let the lock go (nothing if not held); ``remove``: delete the lock file first."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _open(self) -> tuple[int, bool]:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            return os.open(self.path, os.O_RDWR), False

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> int | None:
    """The process that holds a ``flock`` on the file open as ``fd``, from ``/proc/locks``
    (lines like ``1: FLOCK  ADVISORY  WRITE 4697 fe:00:2147361 0 EOF``); None if unknown."""
    inode = str(os.fstat(fd).st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for fields in map(str.split, lines):
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].split(":")[-1] == inode:
            return int(fields[4])
    return None
