"""The Ray engine (``engine=ray``): a featurizer's jobs as Ray tasks, one CPU each, on a Ray
this command starts on its machine or on a running cluster (``engine.address``).

Each task computes one job (one part of the feature store, at most 1,000 molecules) and
returns its values to this process, which writes the part: the store's files are written by
one process, wherever the tasks ran. A worker keeps the featurizer it started (a model loaded
once per worker, not once per task). A task whose worker dies in compiled code is split in two
and run again, down to the one molecule that kills it, which fails with that reason, as with
the local engine. At most two tasks per CPU of the cluster wait at once, so a pool of 10^8
molecules is not held in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from regal_torch.engine.jobs import Featurizing, JobQueue, Piece
from regal_torch.engine.local import THREAD_VARIABLES, Results
from regal_torch.errors import RegalError
from regal_torch.overrides import one_line

__all__ = ["RayEngine"]

_STARTED: dict[str, Featurizing] = {}  # in a Ray worker: the featurizers it started, by digest


class RayEngine:
    """Ray tasks on this machine or a cluster.

    Args:
        address: A running cluster's address (``auto``: the one ``ray start`` started on this
            machine, or ``RAY_ADDRESS``; ``HOST:PORT``: that head); None: start a Ray on this
            machine for this command (or use the one this process already started).
        num_cpus: CPUs of a Ray this command starts; None: every available core. Not used
            with ``address``: a cluster has the CPUs its nodes were started with.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise RegalError(f"engine.address must be auto, HOST:PORT or null; got {address!r}")
        if num_cpus is not None and (
            isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1
        ):
            raise RegalError(f"engine.num_cpus must be an integer >= 1 or null; got {num_cpus!r}")
        self.address, self.num_cpus = address, num_cpus

    def slots(self) -> int:
        """How many jobs run at once: the CPUs of the Ray (started on the first call)."""
        return max(int(self._ray().cluster_resources().get("CPU", 1)), 1)

    def describe(self, jobs: int) -> str:
        """How ``jobs`` jobs will run, for the feature stage's first line."""
        ray = self._ray()
        nodes = sum(node["Alive"] for node in ray.nodes())
        cpus = int(ray.cluster_resources().get("CPU", 0))
        return f"as Ray tasks on {cpus} CPUs of {nodes} node{'s' * (nodes != 1)}"

    def _ray(self) -> Any:
        """The ``ray`` module, connected (started on the first call)."""
        try:
            import ray
        except ImportError:
            raise RegalError(
                'engine=ray needs the ray package: pip install -e ".[ray]" (or pip install '
                "regal_torch[ray])"
            ) from None
        if not ray.is_initialized():
            env = {v: os.environ.get(v, "1") for v in THREAD_VARIABLES}
            if self.address is None:  # workers of this machine: a featurizer we import, they can
                env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
            # ray.init installs its own SIGTERM and SIGINT handlers: the run's (preemption,
            # Lightning's) are put back, so a SIGTERM still stops the run as it should
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                ray.init(
                    address=self.address,
                    num_cpus=self.num_cpus if self.address is None else None,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    runtime_env={"env_vars": env},
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a Ray on this machine"
                raise RegalError(
                    f"engine=ray: cannot start or reach {where}: {one_line(exc)}"
                ) from exc
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        return ray

    @contextmanager
    def features(
        self, featurizer: Featurizing, jobs: Iterator[tuple[int, list[str]]], count: int
    ) -> Iterator[Results]:
        """``(job, values, reasons)`` of each of the ``count`` jobs ``(job, smiles)``, in the
        order the tasks finish."""
        ray = self._ray()
        task = ray.remote(num_cpus=1, max_retries=0)(_compute)
        blob = pickle.dumps(featurizer)
        shared = ray.put(blob)
        digest = hashlib.blake2b(blob, digest_size=16).hexdigest()
        limit = 2 * self.slots()
        running: dict[Any, Piece] = {}

        def results() -> Results:
            queue = JobQueue(jobs, len(featurizer.columns))
            while True:
                while len(running) < limit and (piece := queue.take()) is not None:
                    running[task.remote(shared, digest, piece[2])] = piece
                if not running:
                    return
                [ref], _ = ray.wait(list(running), num_returns=1)
                piece = running.pop(ref)
                try:
                    result = queue.done(piece, *ray.get(ref))
                except ray.exceptions.WorkerCrashedError:
                    result = queue.crashed(piece, "the featurizer's Ray worker died")
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, RegalError):
                        raise RegalError(str(exc.cause)) from None
                    raise
                if result is not None:
                    yield result

        try:
            yield results()
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


def _compute(blob: bytes, digest: str, smiles: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """A Ray task: the featurizer pickled in ``blob`` (started once per worker) on ``smiles``."""
    featurizer = _STARTED.get(digest)
    if featurizer is None:
        featurizer = pickle.loads(blob)
        featurizer.start()
        _STARTED[digest] = featurizer
    return featurizer.compute(smiles)
