"""Round-level progress of a run: one line per finished round, and a bar on a terminal.

The line (round, labels, test metrics, seconds per phase, elapsed time and an estimate of the
time left) always goes to stdout, so logs of batch jobs show it too. The bar (rounds done /
total, labels so far, last test MAE, elapsed and remaining time) is drawn on stderr only when
``progress`` is true, or ``auto`` and stderr is a terminal; Lightning's per-epoch bar is then
drawn below it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm


def round_line(row: dict[str, Any], rounds: int, unit: str) -> str:
    """The line printed for a finished round: its labels, test metrics and seconds per phase
    (``row`` is the round's row of ``history.csv``; ``unit`` the target's, or empty). NLL and
    Spearman are those of the std the run uses: with ``loop.local_neighbours`` the one chosen
    on the validation molecules (``test_*_local``, named by ``std_used``), else the
    recalibrated one."""
    unit = f" {unit}" if unit else ""
    seconds = "".join(
        f" | {name} {row[f'seconds_{name}']:.1f} s"
        for name in ("train", "predict", "select")
        if not math.isnan(row[f"seconds_{name}"])
    )
    interval = ""
    if "test_coverage" in row:  # the conformal interval's coverage and mean width on test
        interval = (
            f" | {100 * row['interval']:.0f}% interval covers {100 * row['test_coverage']:.1f}%, "
            f"width {row['test_interval_width']:.3f}{unit} "
            f"(const {row['test_interval_width_const']:.3f})"
        )
    std = f"std {row['std_used']}; " if isinstance(row.get("std_used"), str) else ""
    if "n_featurised" in row and not math.isnan(row["n_featurised"]):  # within the phases
        seconds += f" | featurised {int(row['n_featurised'])} ({row['seconds_features']:.1f} s)"
    return (
        f"round {row['round']}/{rounds} | labeled {row['n_labeled']} | "
        f"test MAE {row['test_mae']:.4f}{unit} | RMSE {row['test_rmse']:.4f}{unit} | "
        f"NLL {row.get('test_nll_local', row['test_nll_recal']):.3f} "
        f"({std}const {row['test_nll_const']:.3f}) | "
        f"Spearman {row.get('test_spearman_local', row['test_spearman']):.2f}{interval}{seconds}"
    )


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


class RoundProgress:
    """Progress over rounds ``first_round .. last_round`` of one process.

    Args:
        first_round: The round this process starts at (0, or later on a resume).
        last_round: The last round (``loop.rounds``).
        show: Draw the bar (see :func:`regal_torch.quiet.show_progress`).
    """

    def __init__(self, first_round: int, last_round: int, show: bool) -> None:
        self.remaining = last_round + 1 - first_round
        self.start = self.last = time.perf_counter()
        self.bar = tqdm(
            total=last_round + 1,
            initial=first_round,
            desc="rounds",
            unit="round",
            disable=not show,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def round_done(self, line: str, n_labeled: int, mae: float, unit: str) -> None:
        """Print ``line`` with the elapsed time and an estimate of the time left; move the bar.

        The estimate is the last round's duration times the rounds left (rounds cost more as
        the labeled set grows, so it errs low rather than high).
        """
        now = time.perf_counter()
        self.remaining -= 1
        left = f" | left ~{_clock((now - self.last) * self.remaining)}" if self.remaining else ""
        self.last = now
        tqdm.write(f"{line} | elapsed {_clock(now - self.start)}{left}", file=sys.stdout)
        sys.stdout.flush()
        self.bar.set_postfix_str(f"labeled {n_labeled}, test MAE {mae:.4f}{unit}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
