"""Retraining noise on the QM9 study's data: the same labeled set, different training seeds.

An active-learning strategy can only be told apart from random sampling if its effect on the
test error is larger than what retraining alone changes. This trains the study's model
(``experiment=qm9_gap_benchmark``: GINE MC-dropout, 60 epochs, 10 samples) on fixed random
labeled sets of 1,000 and 2,200 pool molecules (permutation seed 0) with training seeds 0-4
and writes the spread of the test MAE and RMSE to the ``qm9-study-noise`` section of
BENCHMARKS.md.

    python scripts/bench_qm9_study_noise.py
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from regal_torch.models.predict_rows import predict
from regal_torch.quiet import quiet_libraries
from regal_torch.uncertainty.metrics import regression_metrics

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402
from study_setup import fit_on, random_pool_order, study_config  # noqa: E402

SIZES = (1000, 2200)
SEEDS = range(5)


def main() -> None:
    quiet_libraries()
    cfg = study_config()
    dataset = instantiate(cfg.data.dataset)
    lines = [
        "## QM9 study: retraining noise at fixed labels",
        "",
        "The study's model and data; the same random labeled set (pool permutation seed 0),",
        "trained with seeds 0-4 (weights, dropout, batch order). Spread = sample std over the",
        f"{len(SEEDS)} seeds, in eV and in percent of the mean. {torch.get_num_threads()} "
        f"thread(s), 1-minute load average when done: {os.getloadavg()[0]:.1f}.",
        "",
        "| labels | test MAE per seed (eV) | MAE mean ± std | MAE std / mean | RMSE mean ± std |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in SIZES:
        picks = random_pool_order(instantiate(cfg.data.datamodule, dataset=dataset), 0)[:n]
        maes, rmses = [], []
        for seed in SEEDS:
            dm, model, trainer, _ = fit_on(cfg, dataset, picks, seed)
            test = predict(trainer, model, dm.test_dataloader())
            metrics = regression_metrics(test, dm.truth[dm.test], "test")
            maes.append(metrics["test_mae"])
            rmses.append(metrics["test_rmse"])
            print(f"n={n} seed={seed}: MAE {maes[-1]:.4f} RMSE {rmses[-1]:.4f}", flush=True)
        mae, mae_sd = statistics.mean(maes), statistics.stdev(maes)
        lines.append(
            f"| {n:,} | {', '.join(f'{m:.4f}' for m in maes)} | {mae:.4f} ± {mae_sd:.4f} | "
            f"{100 * mae_sd / mae:.1f}% | "
            f"{statistics.mean(rmses):.4f} ± {statistics.stdev(rmses):.4f} |"
        )
    write_section(
        "qm9-study-noise", "\n".join(lines), reproduce="python scripts/bench_qm9_study_noise.py"
    )


if __name__ == "__main__":
    main()
