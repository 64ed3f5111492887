"""``oracle=function``: a Python callable computes each picked molecule's label.

``oracle.function=package.module:callable`` is called as ``callable(id: str, smiles: str)``
and returns the label (a number). An exception, a NaN or infinite value, something that is not
a number, a call that runs past ``oracle.timeout`` seconds and a process that dies (a crash in
compiled code) are failures with their reason. Calls run in ``oracle.workers`` processes
started for the round (fresh interpreters, :mod:`regal_torch.oracles.worker`, so no state of
the run leaks into them); a worker whose call timed out or died is replaced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from regal_torch.errors import RegalError
from regal_torch.loop.oracle import ComputedOracle, Record
from regal_torch.oracles.worker import resolve

# One thread per worker for each math library, unless set: the calculations run in parallel
# through oracle.workers, and threads of several workers fighting over the cores cost more than
# they give (GFN2-xTB on a small molecule: 0.01 s alone, up to 2 s so on two busy cores).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class _Worker:
    """One worker process (:mod:`regal_torch.oracles.worker`); ``task`` is the id it computes.

    It sees the run's ``sys.path`` (so a function the run can import, it can too) and starts
    a session of its own: a Ctrl-C or SIGTERM sent to the run's process group reaches the run
    alone, which ends its workers without recording their unfinished calls as failures.
    """

    def __init__(self, reference: str) -> None:
        env = {variable: "1" for variable in THREAD_VARIABLES} | dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "regal_torch.oracles.worker", reference],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            start_new_session=True,
        )
        self.ready = False
        self.task: str | None = None
        self.since = 0.0

    def give(self, ident: str, smiles: str) -> None:
        self.task, self.since = ident, time.monotonic()
        try:
            self.process.stdin.write((json.dumps([ident, smiles]) + "\n").encode())
        except BrokenPipeError:
            pass  # it died: its output ends, and the task is recorded as failed

    def receive(self) -> Any:
        """The worker's next message, or None if it is gone."""
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def end(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


class FunctionOracle(ComputedOracle):
    """Labels from ``function(id, smiles)``, in ``workers`` processes.

    Args:
        run_dir, ids, smiles, progress: As for :class:`ComputedOracle`.
        function: ``package.module:callable`` (checked at once: it is imported here).
        workers: Processes calling it at the same time (>= 1).
        timeout: Seconds a call may take (null: no limit); a call past it fails.
    """

    def __init__(
        self,
        run_dir: Path,
        ids: list[str],
        smiles: list[str],
        function: str,
        workers: int = 1,
        timeout: float | None = None,
        progress: bool | str = "auto",
    ) -> None:
        if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
            raise RegalError(f"oracle.workers={workers!r} must be an integer >= 1")
        check_timeout(timeout)
        resolve(function)
        super().__init__(run_dir, ids, smiles, progress)
        self.function, self.parallel, self.timeout = function, workers, timeout

    def compute(self, round_: int, todo: list[tuple[str, str]], record: Record) -> None:
        queue = deque(todo)
        workers = [_Worker(self.function) for _ in range(min(self.parallel, len(todo)))]
        try:
            while queue or any(w.task is not None for w in workers):
                for worker in workers:
                    if worker.ready and worker.task is None and queue:
                        worker.give(*queue.popleft())
                for i in self._wait(workers, record):
                    workers[i].end()
                    workers[i] = _Worker(self.function)
        finally:
            for worker in workers:
                worker.end()

    def _wait(self, workers: list[_Worker], record: Record) -> list[int]:
        """Wait for the workers' messages, deaths or timeouts and record them; returns the
        workers to replace (dead or timed out)."""
        limit = None
        started = [w.since for w in workers if w.task is not None]
        if self.timeout is not None and started:
            limit = max(0.0, min(started) + self.timeout - time.monotonic())
        ready = wait([w.process.stdout for w in workers], limit)
        replace = []
        for i, worker in enumerate(workers):
            if worker.process.stdout in ready:
                message = worker.receive()
                if message == "ready":
                    worker.ready = True
                elif message is not None:
                    record(worker.task, *message)
                    worker.task = None
                elif worker.task is not None:
                    code = worker.process.wait()
                    record(worker.task, None, f"its process died (exit code {code})")
                    replace.append(i)
                else:
                    raise RegalError(
                        f"oracle.function={self.function!r}: a worker process could not start "
                        f"it (exit code {worker.process.wait()}; see the lines above)"
                    )
            elif self.timeout is not None and worker.task is not None:
                if time.monotonic() - worker.since >= self.timeout:
                    record(worker.task, None, f"timed out after {self.timeout:g} s")
                    replace.append(i)
        return replace


def check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise RegalError(f"oracle.timeout={timeout!r} must be null or a number of seconds > 0")
