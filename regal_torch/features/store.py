"""The on-disk cache of one featurizer's values over one list of molecules.

A store is a folder ``NAME-KEY`` under the dataset's feature folder, keyed by the SHA-256 of
the molecules' SMILES (in dataset order), the featurizer's name and version, the versions of
the packages it names (:meth:`regal_torch.features.featurizer.Featurizer.packages`) and this
format's version: other molecules, another featurizer or package version give another folder,
so a stale store is never read. It holds

=================  ===========  ==============================================================
file               shape        meaning
=================  ===========  ==============================================================
``values.npy``     ``[n, C]``   float32, every column the featurizer computes (NaN: failed)
``fill.npy``       ``[C]``      float32, each column's mean over the molecules that succeeded
``failures.json``               ``{row: reason}`` of the molecules that failed
``meta.json``                   the key, the time the build took, the number of failures
=================  ===========  ==============================================================

The build computes chunks of :data:`CHUNK` molecules in ``workers`` processes (fresh ones, with
one thread per math library each: GFN2-xTB's OpenMP and onnxruntime fight over the cores
otherwise), shows a bar on a terminal and a line a minute otherwise, and keeps every finished
chunk in ``NAME-KEY.partial/``: a build that is killed resumes from its last chunk, and never
looks complete, since the folder is renamed into place only when every chunk is in.
Processes that need the same store at the same time build it once
(:func:`regal_torch.data.cache_folder.one_builder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from tqdm import tqdm

from regal_torch.data.cache_folder import one_builder, write_synced
from regal_torch.errors import RegalError
from regal_torch.features.featurizer import Featurizer

__all__ = ["CHUNK", "FeatureStore", "open_store"]

log = logging.getLogger(__name__)

STORE_FORMAT = 1
CHUNK = 1000  # molecules per task: what a killed build loses at most, per worker
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_LINE_SECONDS = 60  # without a terminal: a progress line this often


def smiles_digest(smiles: Sequence[str]) -> str:
    """SHA-256 of the SMILES, one per line, in order."""
    digest = hashlib.sha256()
    for s in smiles:
        digest.update(s.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def open_store(
    featurizer: Featurizer,
    smiles: Sequence[str],
    folder: Path,
    workers: int,
    digest: str | None = None,
    chunk: int = CHUNK,
) -> FeatureStore:
    """The store of ``featurizer`` over ``smiles`` under ``folder``, built first if needed.

    Args:
        featurizer: What to compute.
        smiles: Every molecule's SMILES, in dataset order.
        folder: The folder holding the dataset's stores.
        workers: Processes for a build (1: this process only).
        digest: :func:`smiles_digest` of ``smiles``, if the caller has it.
        chunk: Molecules per task of a build (:data:`CHUNK`).

    Raises:
        RegalError: the featurizer's package is missing, or the folder is not writable.
    """
    key = {
        "format": STORE_FORMAT,
        "featurizer": featurizer.name,
        "version": featurizer.version,
        "packages": featurizer.packages(),
        "smiles_sha256": digest or smiles_digest(smiles),
        "molecules": len(smiles),
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    target = Path(folder).expanduser() / f"{featurizer.name}-{name}"
    if not target.is_dir():
        with one_builder(target):
            if not target.is_dir():
                _build(featurizer, smiles, target, key, workers, chunk)
    else:
        log.info("reusing the %s features %s", featurizer.name, target)
    return FeatureStore(target)


class FeatureStore:
    """The memory-mapped arrays of one store folder (see the module docstring).

    Pickling keeps only the folder; unpickling maps it again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._open()

    def _open(self) -> None:
        try:
            self.meta = json.loads((self.folder / "meta.json").read_text())
            self.values = np.load(self.folder / "values.npy", mmap_mode="r").view(np.ndarray)
            self.fill = np.load(self.folder / "fill.npy")
            raw = json.loads((self.folder / "failures.json").read_text())
        except (OSError, ValueError) as exc:
            raise RegalError(
                f"{self.folder}: damaged feature cache ({exc!r}); delete the folder to rebuild it"
            ) from exc
        self.failures = {int(row): reason for row, reason in raw.items()}

    def __getstate__(self) -> dict:
        return {"folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        self.folder = state["folder"]
        self._open()

    def __len__(self) -> int:
        return len(self.values)


def _build(
    featurizer: Featurizer,
    smiles: Sequence[str],
    target: Path,
    key: dict,
    workers: int,
    chunk: int,
) -> None:
    start = time.perf_counter()
    partial = target.with_name(f"{target.name}.partial")
    try:
        partial.mkdir(parents=True, exist_ok=True)
        write_synced(partial / "key.json", json.dumps(key, indent=1).encode())
    except OSError as exc:
        raise RegalError(
            f"{target.parent}: cannot write the {featurizer.name} feature cache ({exc}); set "
            "data.cache_dir (molecules) or data.dataset.root (QM9) to a writable folder"
        ) from exc
    n = len(smiles)
    chunks = range((n + chunk - 1) // chunk)
    todo = [c for c in chunks if not (partial / f"chunk_{c:06d}.npz").is_file()]
    done = n - sum(min(chunk, n - c * chunk) for c in todo)
    _say(
        f"features {featurizer.name}: computing {n - done:,} of {n:,} molecules with "
        f"{min(workers, max(len(todo), 1))} processes -> {target}"
        + (f" ({done:,} kept from a build that stopped)" if done else "")
    )
    progress = _Progress(featurizer.name, n, done)
    jobs = ((c, list(smiles[c * chunk : (c + 1) * chunk])) for c in todo)
    with _results(featurizer, jobs, workers, len(todo)) as results:
        for c, values, reasons in results:
            _write_chunk(partial / f"chunk_{c:06d}.npz", values, reasons)
            progress.update(len(reasons))
    progress.close()
    failures = _assemble(partial, n, len(featurizer.columns), chunks, chunk)
    seconds = time.perf_counter() - start
    meta = {"key": key, "seconds": round(seconds, 2), "failures": len(failures)}
    write_synced(partial / "meta.json", json.dumps(meta, indent=1).encode())
    for c in chunks:
        (partial / f"chunk_{c:06d}.npz").unlink()
    (partial / "key.json").unlink()
    try:
        partial.rename(target)
    except OSError:
        if not (target / "meta.json").is_file():
            raise
        shutil.rmtree(partial)  # another host built the same store meanwhile
    _say(
        f"features {featurizer.name}: {n:,} molecules in {seconds:.1f} s"
        + (
            f", {len(failures):,} failed (imputed; see {target / 'failures.json'})"
            if failures
            else ""
        )
    )


@contextmanager
def _results(
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


def _write_chunk(path: Path, values: np.ndarray, reasons: list[str | None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    failed = {i: r for i, r in enumerate(reasons) if r is not None}
    with open(tmp, "wb") as f:
        np.savez(f, values=values, failures=np.array(json.dumps(failed)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _assemble(partial: Path, n: int, columns: int, chunks: range, size: int) -> dict[int, str]:
    """Write ``values.npy``, ``fill.npy`` and ``failures.json`` from the chunk files."""
    values = np.lib.format.open_memmap(
        partial / "values.npy", mode="w+", dtype=np.float32, shape=(n, columns)
    )
    failures: dict[int, str] = {}
    total, count = np.zeros(columns), np.zeros(columns)
    for c in chunks:
        with np.load(partial / f"chunk_{c:06d}.npz") as chunk:
            block = chunk["values"]
            failed = json.loads(str(chunk["failures"]))
        values[c * size : c * size + len(block)] = block
        failures.update({c * size + int(i): r for i, r in failed.items()})
        finite = np.isfinite(block)
        total += np.where(finite, block, 0).sum(0)
        count += finite.sum(0)
    values.flush()
    del values
    fill = np.where(count > 0, total / np.maximum(count, 1), 0).astype(np.float32)
    np.save(partial / "fill.npy", fill)
    write_synced(partial / "failures.json", json.dumps(failures).encode())
    return failures


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Progress:
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
            _say(
                f"features {self.name}: {self.done:,}/{self.total:,} molecules "
                f"({100 * self.done / self.total:.0f}%), ~{left / 60:.0f} min left"
            )

    def close(self) -> None:
        self.bar.close()
