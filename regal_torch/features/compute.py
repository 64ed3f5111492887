"""Computing a featurizer's values: here, or in worker processes, with progress shown.

:func:`computed` yields ``(job, values, reasons)`` for every job of molecules, from this
process or from ``workers`` fresh processes (:mod:`regal_torch.features.worker`) with one
thread per math library each (GFN2-xTB's OpenMP and onnxruntime fight over the cores
otherwise). A worker that dies in compiled code is replaced, and its job is split in two and
computed again, down to the one molecule that kills it, which fails with that reason.
:class:`Progress` draws a bar on a terminal and writes a line a minute otherwise.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait

import numpy as np
from tqdm import tqdm

from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer

__all__ = ["Progress", "computed", "say"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_LINE_SECONDS = 60  # without a terminal: a progress line this often


@contextmanager
def computed(
    featurizer: Featurizer, jobs: Iterator[tuple[int, list[str]]], workers: int, count: int
) -> Iterator[Iterator[tuple[int, np.ndarray, list[str | None]]]]:
    """``(chunk, values, reasons)`` of every job: computed here, or by ``workers`` fresh
    processes (:mod:`regal_torch.features.worker`) in the order they finish."""
    if workers <= 1 or count <= 1:
        featurizer.start()
        yield ((c, *featurizer.compute(s)) for c, s in jobs)
        return
    pool = _Workers(featurizer, min(workers, count))
    try:
        yield pool.run(jobs)
    finally:
        pool.close()


class _Workers:
    """Worker processes with one thread per math library each (unless the variables are
    set), fed one job at a time.

    A worker that dies (a crash in compiled code) is replaced, and its job is split in two
    and computed again, down to the one molecule that kills it, which fails with that reason.
    """

    def __init__(self, featurizer: Featurizer, n: int) -> None:
        self.featurizer = featurizer
        self.env = {v: "1" for v in _THREAD_VARIABLES} | dict(os.environ)
        # the build's sys.path: a featurizer the build can import, the workers can too
        self.env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
        self.idle: list[subprocess.Popen] = []
        self.busy: dict[int, tuple[subprocess.Popen, tuple[int, int, list[str]]]] = {}
        for _ in range(n):
            self.idle.append(self._start())

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "regal_torch.features.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
        )
        pickle.dump(self.featurizer, process.stdin)
        process.stdin.flush()
        return process

    def run(
        self, jobs: Iterator[tuple[int, list[str]]]
    ) -> Iterator[tuple[int, np.ndarray, list[str | None]]]:
        queue: deque[tuple[int, int, list[str]]] = deque()
        parts: dict[int, list[tuple[int, np.ndarray, list[str | None]]]] = {}
        sizes: dict[int, int] = {}
        jobs = iter(jobs)
        while True:
            while self.idle:
                if not queue:
                    job = next(jobs, None)
                    if job is None:
                        break
                    sizes[job[0]] = len(job[1])
                    queue.append((job[0], 0, job[1]))
                self._give(self.idle.pop(), queue.popleft())
            if not self.busy:
                return
            for stream in wait([p.stdout for p, _ in self.busy.values()]):
                process, job = self.busy.pop(stream.fileno())
                try:
                    message = pickle.load(stream)
                except (EOFError, pickle.UnpicklingError):
                    message = None
                if message is not None and message[0] == "error":
                    raise RegalError(message[1])
                if message is None:  # it died on this job
                    code = process.wait()
                    self.idle.append(self._start())
                    chunk, start, smiles = job
                    if len(smiles) > 1:
                        half = len(smiles) // 2
                        queue.extend(
                            [(chunk, start, smiles[:half]), (chunk, start + half, smiles[half:])]
                        )
                        continue
                    values = np.full((1, len(self.featurizer.columns)), np.nan, np.float32)
                    message = (
                        chunk,
                        start,
                        values,
                        [f"the featurizer's process died (exit code {code})"],
                    )
                else:
                    self.idle.append(process)
                chunk, start, values, reasons = message
                parts.setdefault(chunk, []).append((start, values, reasons))
                if sum(len(r) for _, _, r in parts[chunk]) == sizes[chunk]:
                    pieces = sorted(parts.pop(chunk), key=lambda part: part[0])
                    yield (
                        chunk,
                        np.concatenate([v for _, v, _ in pieces]),
                        [r for _, _, rs in pieces for r in rs],
                    )

    def _give(self, process: subprocess.Popen, job: tuple[int, int, list[str]]) -> None:
        pickle.dump(job, process.stdin)
        process.stdin.flush()
        self.busy[process.stdout.fileno()] = (process, job)

    def close(self) -> None:
        for process in [*self.idle, *(p for p, _ in self.busy.values())]:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()


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
