"""The local engine: a featurizer's jobs computed here, or in fresh worker processes of this
machine (``engine=local``, the default).

Each worker (:mod:`regal_torch.engine.worker`) runs one thread per math library (GFN2-xTB's
OpenMP and onnxruntime fight over the cores otherwise) unless the variables are set. A worker
that dies in compiled code is replaced, and its job is split in two and computed again, down
to the one molecule that kills it, which fails with that reason.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait

from regal_torch.cores import available_cpus
from regal_torch.engine.jobs import Featurizing, JobQueue, Piece, Result
from regal_torch.errors import RegalError

__all__ = ["THREAD_VARIABLES", "LocalEngine", "Results"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
Results = Iterator[Result]  # what an engine yields: each job's results as it is done


class LocalEngine:
    """Worker processes of this machine.

    Args:
        workers: Processes that compute features; None: every available core; 0 or 1: this
            process only.
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
        ):
            raise RegalError(f"engine.workers must be an integer >= 0 or null; got {workers!r}")
        self.workers = available_cpus() if workers is None else max(workers, 1)

    def slots(self) -> int:
        """How many jobs run at once: the worker processes."""
        return self.workers

    def describe(self, jobs: int) -> str:
        """How ``jobs`` jobs will run, for the feature stage's first line."""
        return f"with {min(self.workers, jobs)} processes"

    @contextmanager
    def features(
        self, featurizer: Featurizing, jobs: Iterator[tuple[int, list[str]]], count: int
    ) -> Iterator[Results]:
        """``(job, values, reasons)`` of each of the ``count`` jobs ``(job, smiles)``: computed
        here (one worker or one job), else by worker processes in the order they finish."""
        if self.workers <= 1 or count <= 1:
            featurizer.start()
            yield ((c, *featurizer.compute(s)) for c, s in jobs)
            return
        pool = _Workers(featurizer, min(self.workers, count))
        try:
            yield pool.run(jobs)
        finally:
            pool.close()


class _Workers:
    """Worker processes with one thread per math library each (unless the variables are
    set), fed one job at a time.

    A worker that dies (a crash in compiled code) is replaced, and its piece split
    (:class:`~regal_torch.engine.jobs.JobQueue`).
    """

    def __init__(self, featurizer: Featurizing, n: int) -> None:
        self.featurizer = featurizer
        self.env = {v: "1" for v in THREAD_VARIABLES} | dict(os.environ)
        # the build's sys.path: a featurizer the build can import, the workers can too
        self.env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
        self.idle: list[subprocess.Popen] = []
        self.busy: dict[int, tuple[subprocess.Popen, Piece]] = {}
        for _ in range(n):
            self.idle.append(self._start())

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "regal_torch.engine.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
        )
        pickle.dump(self.featurizer, process.stdin)
        process.stdin.flush()
        return process

    def run(self, jobs: Iterator[tuple[int, list[str]]]) -> Results:
        queue = JobQueue(jobs, len(self.featurizer.columns))
        while True:
            while self.idle and (piece := queue.take()) is not None:
                self._give(self.idle.pop(), piece)
            if not self.busy:
                return
            for stream in wait([p.stdout for p, _ in self.busy.values()]):
                process, piece = self.busy.pop(stream.fileno())
                try:
                    message = pickle.load(stream)
                except (EOFError, pickle.UnpicklingError):
                    message = None
                if message is not None and message[0] == "error":
                    raise RegalError(message[1])
                if message is None:  # it died on this piece
                    code = process.wait()
                    self.idle.append(self._start())
                    reason = f"the featurizer's process died (exit code {code})"
                    result = queue.crashed(piece, reason)
                else:
                    self.idle.append(process)
                    result = queue.done(piece, message[2], message[3])
                if result is not None:
                    yield result

    def _give(self, process: subprocess.Popen, piece: Piece) -> None:
        pickle.dump(piece, process.stdin)
        process.stdin.flush()
        self.busy[process.stdout.fileno()] = (process, piece)

    def close(self) -> None:
        for process in [*self.idle, *(p for p, _ in self.busy.values())]:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
