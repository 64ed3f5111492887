"""A feature worker: ``python -m regal_torch.engine.worker``, started by the local engine.

It reads pickled messages on its standard input: first a featurizer, then jobs ``(chunk,
start, smiles)``; for each job it writes ``(chunk, start, values, reasons)`` (pickled) on its
original standard output, and ends when its input ends (as when the build is killed). What
the featurizer's compiled code prints goes to standard error, so it cannot mix with the
results. A featurizer that cannot start sends ``("error", message)`` and the worker ends.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

from regal_torch.errors import RegalError
from regal_torch.parent import end_with_parent


def main() -> None:
    end_with_parent(signal.SIGKILL)  # a build killed by SIGKILL takes its workers with it
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    jobs = sys.stdin.buffer
    featurizer = pickle.load(jobs)
    try:
        featurizer.start()
    except RegalError as exc:
        pickle.dump(("error", str(exc)), results)
        results.flush()
        return
    while True:
        try:
            chunk, start, smiles = pickle.load(jobs)
        except EOFError:
            return
        values, reasons = featurizer.compute(smiles)
        pickle.dump((chunk, start, values, reasons), results)
        results.flush()


if __name__ == "__main__":
    main()
