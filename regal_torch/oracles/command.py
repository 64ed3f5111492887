"""``oracle=command``: an external program computes a round's labels.

Once per round, ``oracle.command`` runs through the shell as ``COMMAND QUERY OUTPUT``: QUERY
is a CSV (``id, smiles``) of the molecules to label, OUTPUT the path where the program writes
a CSV with ``id`` and ``label`` columns (``oracle/round_XXX_query.csv`` and
``oracle/round_XXX_labels.csv`` in the run folder). The program may wrap anything: a SLURM
submission that waits (``sbatch --wait``), a batch of DFT jobs, a lookup. Its standard output
and error go to ``oracle/round_XXX.log``.

Rows are taken as the program writes them (read each half second; a line counts once it ends
with a newline), so a run killed meanwhile keeps them, and a run that resumes takes what a
killed program had written before starting it again for the rest. A row whose label is empty,
NaN or not a number, a molecule missing from the output once the program ends, and every
molecule left when it exits non-zero or runs past ``oracle.timeout`` are failures.
"""

from __future__ import annotations

import io
import math
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd

from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, write_csv
from regal_torch.loop.oracle import ComputedOracle, Record
from regal_torch.oracles.function import check_timeout

POLL_SECONDS = 0.5


class CommandOracle(ComputedOracle):
    """Labels from an external program run once per round.

    Args:
        run_dir, ids, smiles, progress: As for :class:`ComputedOracle`.
        command: The shell command; the query and output paths are appended as arguments.
        timeout: Seconds the program may run per round (null: no limit).
    """

    def __init__(
        self,
        run_dir: Path,
        ids: list[str],
        smiles: list[str],
        command: str,
        timeout: float | None = None,
        progress: bool | str = "auto",
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise RegalError(f"oracle.command={command!r} must be a shell command")
        check_timeout(timeout)
        super().__init__(run_dir, ids, smiles, progress)
        self.command, self.timeout = command, timeout

    def compute(self, round_: int, todo: list[tuple[str, str]], record: Record) -> None:
        folder = self.run_dir / "oracle"
        folder.mkdir(exist_ok=True)
        query = folder / f"round_{round_:03d}_query.csv"
        output = folder / f"round_{round_:03d}_labels.csv"
        log = folder / f"round_{round_:03d}.log"
        left = dict(todo)
        if output.exists():  # written by the program of a run that was killed
            _take(output, left, record, final=False)
            output.unlink()
        if not left:
            return
        frame = pd.DataFrame({"id": list(left), "smiles": list(left.values())})
        write_csv(query, frame, RUN_HINT)
        line = f"{self.command} {shlex.quote(str(query))} {shlex.quote(str(output))}"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                line, shell=True, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                reason = self._follow(process, output, left, record, log)
            finally:
                if process.poll() is None:  # SIGTERM or an error in the run: end the program
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        _take(output, left, record, final=True)
        for ident in list(left):
            record(ident, None, reason)
            del left[ident]

    def _follow(
        self,
        process: subprocess.Popen,
        output: Path,
        left: dict[str, str],
        record: Record,
        log: Path,
    ) -> str:
        """Take rows while the program runs; returns the reason of the molecules it leaves."""
        start = time.monotonic()
        while process.poll() is None:
            _take(output, left, record, final=False)
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return f"oracle.command timed out after {self.timeout:g} s"
            time.sleep(POLL_SECONDS)
        if process.returncode:
            return f"oracle.command exited with status {process.returncode} (see {log})"
        return f"not in the output of oracle.command (see {log})"


def _take(output: Path, left: dict[str, str], record: Record, final: bool) -> None:
    """Record the rows of ``output`` for molecules in ``left`` (removing them from it).

    Until the program ends (``final`` false) only whole lines count, and a file without its
    columns yet is skipped.

    Raises:
        RegalError: (``final``) the finished file has no ``id`` or ``label`` column.
    """
    if not output.exists():
        return
    text = output.read_bytes().decode("utf-8", errors="replace")
    if not final:
        text = text[: text.rfind("\n") + 1]
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        frame = pd.DataFrame()
    if "id" not in frame.columns or "label" not in frame.columns:
        if final and text.strip():
            raise RegalError(
                f"{output}: the output of oracle.command needs 'id' and 'label' columns; "
                f"it has {list(frame.columns)}"
            )
        return
    for ident, raw in zip(frame["id"].str.strip(), frame["label"].str.strip(), strict=True):
        if ident not in left:
            continue
        del left[ident]
        try:
            value = float(raw)
        except ValueError:
            record(ident, None, f"label {raw!r} in the output of oracle.command is not a number")
            continue
        if math.isfinite(value):
            record(ident, value, "")
        else:
            record(ident, None, f"label {raw!r} in the output of oracle.command")
