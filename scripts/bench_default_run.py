"""Time the README's main job (``python -m regal_torch.run``, default config) round by round.

Runs it as a first run: in a fresh temporary run directory, with ``REGAL_TORCH_DATA`` a fresh
temporary folder (so the QM9 cache and the molecule features are built as on a fresh clone),
and writes the ``default-run`` section of BENCHMARKS.md from its ``history.csv``.

    python scripts/bench_default_run.py [hydra overrides]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as run_dir, tempfile.TemporaryDirectory() as data:
        cmd = [sys.executable, "-m", "regal_torch.run", *overrides, f"hydra.run.dir={run_dir}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "REGAL_TORCH_DATA": data})
        wall = time.perf_counter() - start
        history = pd.read_csv(Path(run_dir) / "history.csv")
        cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
        choices = OmegaConf.load(Path(run_dir) / ".hydra" / "hydra.yaml").hydra.runtime.choices
    lines = [
        "## Default run, round by round",
        "",
        f"`python -m regal_torch.run {' '.join(overrides)}`".replace(" `", "`") + ": "
        f"data={choices.data} (target {cfg.data.target}, subset {cfg.data.subset}), "
        f"model={choices.model}, strategy={choices.strategy}, {cfg.loop.initial_size} initial "
        f"labels + {cfg.loop.rounds} rounds of {cfg.loop.batch_size}, "
        f"{cfg.trainer.max_epochs} epochs per round;",
        "2 CPU cores, as a first run (the QM9 cache and the molecule features built from"
        f" nothing). Whole command, including start-up: {wall:.0f} s (1-minute load average",
        f"when done: {os.getloadavg()[0]:.1f}; above 2 means other jobs shared the cores).",
        "",
        "| round | labeled | test MAE (eV) | test RMSE (eV) | train (s) | test (s) | "
        "predict pool (s) | select (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in history.itertuples():
        lines.append(
            f"| {row.round} | {row.n_labeled} | {row.test_mae:.3f} | {row.test_rmse:.3f} | "
            f"{row.seconds_train:.1f} | {row.seconds_test:.1f} | {_s(row.seconds_predict)} | "
            f"{_s(row.seconds_select, 3)} |"
        )
    command = " ".join(["python scripts/bench_default_run.py", *overrides])
    write_section("default-run", "\n".join(lines), reproduce=command)


def _s(value: float, digits: int = 1) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


if __name__ == "__main__":
    main(sys.argv[1:])
