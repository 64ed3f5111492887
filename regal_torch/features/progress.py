"""The feature stage's progress: :class:`Progress` draws a bar on a terminal and writes a
line a minute otherwise; :func:`say` writes one line on standard error."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__ = ["Progress", "say"]

_LINE_SECONDS = 60  # without a terminal: a progress line this often


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A bar on a terminal; else a line every :data:`_LINE_SECONDS` seconds."""

    def __init__(self, name: str, total: int, done: int) -> None:
        self.name, self.total, self.done = name, total, done
        self.start = self.last = time.perf_counter()
        self.first = done
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=f"features {name}",
            unit="mol",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            dynamic_ncols=True,
        )

    def update(self, k: int) -> None:
        self.done += k
        self.bar.update(k)
        now = time.perf_counter()
        if self.bar.disable and now - self.last >= _LINE_SECONDS:
            self.last = now
            rate = (self.done - self.first) / (now - self.start)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            say(
                f"features {self.name}: {self.done:,}/{self.total:,} molecules "
                f"({100 * self.done / self.total:.0f}%), ~{left / 60:.0f} min left"
            )

    def close(self) -> None:
        self.bar.close()
