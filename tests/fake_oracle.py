"""A fake calculation for the oracle tests: a label from the SMILES, failing for some ids.

``label(id, smiles)`` is ``len(smiles) / 10``; it raises for ids ending in 3 and returns NaN
for ids ending in 7. Each call appends the id to the file named by ``FAKE_ORACLE_LOG`` (when
set), so a test can count what was computed, and the call numbered ``FAKE_ORACLE_KILL_AT``
(counting the lines of that file) kills the run that started the worker with SIGKILL.
``FAKE_ORACLE_SLEEP`` (seconds) makes each call take that long.
"""

import os
import signal
import time
from pathlib import Path


def value(ident: str, smiles: str) -> float | None:
    """The label ``label`` gives, or None where it fails."""
    return None if ident[-1] in "37" else len(smiles) / 10


def label(ident: str, smiles: str) -> float:
    time.sleep(float(os.environ.get("FAKE_ORACLE_SLEEP", "0")))
    log = os.environ.get("FAKE_ORACLE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{ident}\n")
        kill_at = os.environ.get("FAKE_ORACLE_KILL_AT")
        if kill_at and len(Path(log).read_text().split()) == int(kill_at):
            os.kill(os.getppid(), signal.SIGKILL)
            os._exit(1)  # the run is gone, and its result with it
    if ident.endswith("3"):
        raise ValueError("fake SCF did not converge")
    if ident.endswith("7"):
        return float("nan")
    return len(smiles) / 10


def hang(ident: str, smiles: str) -> float:
    """As ``label``, but ids ending in 1 never return and ids ending in 5 crash the process."""
    if ident.endswith("1"):
        time.sleep(600)
    if ident.endswith("5"):
        os._exit(3)
    return label(ident, smiles)


def broken(ident: str, smiles: str) -> float:
    """Fails for every molecule, as a misconfigured calculation would."""
    raise RuntimeError("no basis set found")
