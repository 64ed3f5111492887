"""Accuracy and uncertainty quality of every model after the issue's small run.

Runs ``python -m regal_torch.run model=<m> strategy=uncertainty data.subset=2000
loop.initial_size=100 loop.batch_size=50 loop.rounds=2 trainer.max_epochs=5`` for each model
in a temporary run directory and writes the ``models`` section of BENCHMARKS.md from the last
row of each ``history.csv``.

    python scripts/bench_models.py [model ...]
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

MODELS = ("mc_dropout", "ensemble", "dkl", "gp")
RUN = [
    "strategy=uncertainty",
    "data.subset=2000",
    "loop.initial_size=100",
    "loop.batch_size=50",
    "loop.rounds=2",
    "trainer.max_epochs=5",
]


def main(models: list[str]) -> None:
    rows = []
    for model in models:
        with tempfile.TemporaryDirectory() as run_dir:
            cmd = [sys.executable, "-m", "regal_torch.run", f"model={model}", *RUN]
            start = time.perf_counter()
            subprocess.run([*cmd, f"hydra.run.dir={run_dir}"], check=True)
            wall = time.perf_counter() - start
            last = pd.read_csv(Path(run_dir) / "history.csv").iloc[-1]
        metrics = last.filter(regex="^(test_|var_scale)").astype(float)
        if not all(math.isfinite(v) for v in metrics):
            raise SystemExit(f"model={model}: non-finite metrics {metrics.to_dict()}")
        rows.append((model, last, wall))
    lines = [
        "## Models: accuracy and uncertainty after a small run",
        "",
        f"`python -m regal_torch.run model=<m> {' '.join(RUN)}` (QM9 gap, 200 test molecules,",
        "last round: 200 labels). NLL in nats on the test set with the variance as predicted",
        "(raw) and scaled by the factor fitted on the validation set (recal); const: a constant",
        "std equal to the validation RMSE (uncertainty that does not beat it carries no",
        "information). Spearman: rank correlation of |error| and predicted std. Miscal.: "
        "miscalibration area (0 = calibrated, 0.5 = worst).",
        f"2 CPU cores (1-minute load average when done: {os.getloadavg()[0]:.1f}; above 2 means "
        "other jobs shared the cores).",
        "",
        "| model | test MAE (eV) | NLL raw | NLL recal | NLL const | Spearman | miscal. raw | "
        "miscal. recal | var scale | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, r, wall in rows:
        lines.append(
            f"| {model} | {r.test_mae:.3f} | {r.test_nll:.2f} | {r.test_nll_recal:.3f} | "
            f"{r.test_nll_const:.3f} | {r.test_spearman:.2f} | {r.test_miscal:.3f} | "
            f"{r.test_miscal_recal:.3f} | {r.var_scale:.3g} | {wall:.0f} |"
        )
    lines += ["", f"Reproduce: `python scripts/bench_models.py {' '.join(models)}`"]
    write_section("models", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
