"""Accuracy and uncertainty quality of every model, after a small run or on the QM9 study's data.

``--setting small`` (default) runs ``python -m regal_torch.run model=<m> strategy=uncertainty
data.subset=2000 loop.initial_size=100 loop.batch_size=50 loop.rounds=2 trainer.max_epochs=5``
and writes the ``models`` section of BENCHMARKS.md; ``--setting study`` trains each model once
on 2,200 random labels of the QM9 study (``experiment=qm9_gap_benchmark strategy=random
loop.initial_size=2200 loop.rounds=0``: 5,000 test, 1,000 val molecules, the study's epochs)
and writes ``models-study``. Both from the last row of each run's ``history.csv``.

    python scripts/bench_models.py [--setting small|study] [model ...]
"""

from __future__ import annotations

import argparse
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
SETTINGS = {  # name -> (section, overrides, what the last row is)
    "small": (
        "models",
        [
            "strategy=uncertainty",
            "data.features=[]",  # the models on the molecule graph alone, as measured
            "loop.local_neighbours=null",
            "data.subset=2000",
            "loop.initial_size=100",
            "loop.batch_size=50",
            "loop.rounds=2",
            "trainer.max_epochs=5",
        ],
        "QM9 gap, 200 test molecules, last round: 200 labels",
    ),
    "study": (
        "models-study",
        [
            "experiment=qm9_gap_benchmark",
            "strategy=random",
            "loop.initial_size=2200",
            "loop.rounds=0",
        ],
        "QM9 gap, the study's 5,000 test and 1,000 val molecules, 2,200 random labels",
    ),
}


def main(setting: str, models: list[str]) -> None:
    section, run, what = SETTINGS[setting]
    rows = []
    for model in models:
        with tempfile.TemporaryDirectory() as run_dir:
            cmd = [sys.executable, "-m", "regal_torch.run", *run, f"model={model}"]
            if setting == "study" and model != "mc_dropout":  # the study sets MC samples
                cmd.append("~model.mc_samples")
            start = time.perf_counter()
            subprocess.run([*cmd, f"hydra.run.dir={run_dir}"], check=True)
            wall = time.perf_counter() - start
            last = pd.read_csv(Path(run_dir) / "history.csv").iloc[-1]
        metrics = last.filter(regex="^(test_|var_scale)").astype(float)
        if not all(math.isfinite(v) for v in metrics):
            raise SystemExit(f"model={model}: non-finite metrics {metrics.to_dict()}")
        rows.append((model, last, wall))
    lines = [
        f"## Models: accuracy and uncertainty ({setting} setting)",
        "",
        f"`python -m regal_torch.run {' '.join(run)} model=<m>` ({what}).",
        "NLL in nats on the test set with the variance as predicted",
        "(raw) and scaled by the factor fitted on the validation set (recal); const: a constant",
        "std equal to the validation RMSE (uncertainty that does not beat it carries no",
        "information). Spearman: rank correlation of |error| and predicted std. Miscal.: "
        "miscalibration area (0 = calibrated, 0.5 = worst).",
        f"{os.cpu_count()} CPU cores (1-minute load average when done: "
        f"{os.getloadavg()[0]:.1f}; above the core count means other jobs shared them).",
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
    lines += [
        "",
        f"Reproduce: `python scripts/bench_models.py --setting {setting} {' '.join(models)}`",
    ]
    write_section(section, "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Accuracy and uncertainty of every model.")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="small")
    parser.add_argument("models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    main(args.setting, args.models)
