"""Command line: ``python -m regal_torch.report DIR [DIR ...] [--out OUT] [--loglog]``.

Finds every run directory under the DIRs (a single run, several runs, or a ``--multirun``
sweep folder), groups the runs by strategy, model and any other option they differ in but the
seed, and writes into OUT (default ``DIR/report`` for one DIR, else ``./report``):
``learning_curves.png``, ``calibration.png`` (when the histories hold calibration metrics),
``summary.csv`` and ``summary.md``; the summary table is also printed. Bad input prints
``error: ...`` on one line and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from regal_torch.errors import RegalError
from regal_torch.report.plots import plot_calibration, plot_learning_curves
from regal_torch.report.runs import find_runs, read_run
from regal_torch.report.summary import (
    ACCURACY_COLUMNS,
    DEFINITIONS,
    TIMING_COLUMNS,
    calibration_columns,
    group_runs,
    mean_curve,
    models_without_random,
    summarize,
)
from regal_torch.report.table import summary_markdown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report command; returns the exit status (0, or 2 on bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m regal_torch.report",
        description="Learning curves and summary tables of regal_torch runs and sweeps.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="runs or sweeps")
    parser.add_argument("--out", type=Path, help="output folder (default: DIR/report or ./report)")
    parser.add_argument("--loglog", action="store_true", help="log-log learning curves")
    args = parser.parse_args(argv)
    out = args.out or (args.dirs[0] / "report" if len(args.dirs) == 1 else Path("report"))
    try:
        report(args.dirs, out, args.loglog)
    except RegalError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


def report(dirs: Sequence[Path], out: Path, loglog: bool = False) -> None:
    """Write the report of the runs under ``dirs`` into ``out`` and print its summary.

    Raises:
        RegalError: a folder is missing, no run is found, a run cannot be read, or the runs
            predict different targets.
    """
    runs = [read_run(path) for path in find_runs(dirs)]
    targets = sorted({(run.data, run.target) for run in runs})
    units = sorted({run.unit for run in runs if run.unit})  # runs older than the unit have ""
    if len(targets) > 1:
        names = ", ".join(f"{data} {target}" for data, target in targets)
        raise RegalError(f"the runs predict different targets ({names}); report them separately")
    if len(units) > 1:
        raise RegalError(
            f"the runs' targets are in different units ({', '.join(units)}); report them separately"
        )
    (data, target), unit = targets[0], (units[0] if units else "")
    quantity = f"{data} {target}"
    groups = group_runs(runs)
    calibration = calibration_columns(runs)
    curves = {
        key: mean_curve(
            [run.history for run in members], [*ACCURACY_COLUMNS, *calibration, *TIMING_COLUMNS]
        )
        for key, members in groups.items()
    }
    seeds = {key: len(members) for key, members in groups.items()}
    table = summarize(curves, seeds)

    out.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(curves, seeds, quantity, unit, out / "learning_curves.png", loglog)
    notes = []
    if calibration:
        plot_calibration(curves, calibration, quantity, unit, out / "calibration.png")
    else:
        notes.append("no calibration metrics in the histories: calibration.png not written")
    missing = models_without_random(table)
    if missing:
        notes.append(
            f"no strategy=random runs for model(s) {', '.join(missing)}: "
            "labels-to-random columns left empty"
        )
    markdown = summary_markdown(table, unit)
    table.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(_summary_file(markdown, len(runs), quantity, notes))

    print(f"{len(runs)} runs in {len(groups)} groups ({quantity})\n")
    print(markdown)
    for note in notes:
        print(f"note: {note}")
    print(f"report written to {out}")


def _summary_file(markdown: str, n_runs: int, quantity: str, notes: list[str]) -> str:
    lines = [
        f"# Active-learning report: {quantity}, {n_runs} runs",
        "",
        markdown,
        *(f"Note: {note}.\n" for note in notes),
        "## Definitions",
        DEFINITIONS,
    ]
    return "\n".join(lines)
