"""Our default GNN vs chemprop v2 on the 20,000-pool QM9 study's pool and test set (BENCHMARKS.md).

The study's data (``experiment=qm9_gap_benchmark``: 26,000 molecules = 5,000 test + 1,000 val
+ 20,000 pool, split seed 0); nested random training sets of 1,000, 2,200 and 5,000 pool
molecules (permutation seed 0). At each size: our default model and trainer (the package
defaults: 100 epochs, 20 MC-dropout samples), the study's setting of the same model (60
epochs, 10 samples), and chemprop 2.3 with its defaults (scripts/chemprop_fit.py, run by
``--chemprop-python``, a Python with chemprop installed). Same thread count for all (the
caller's; the study ran everything on one pinned core). Writes the ``qm9-study-chemprop``
section of BENCHMARKS.md.

    python scripts/bench_qm9_study_chemprop.py --chemprop-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate

from regal_torch.models.predict_rows import predict
from regal_torch.quiet import quiet_libraries
from regal_torch.uncertainty.metrics import regression_metrics

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402
from study_setup import fit_on, random_pool_order, study_config  # noqa: E402

SIZES = (1000, 2200, 5000)
SETUPS = {  # name -> overrides on top of the study's data
    "ours, defaults (100 epochs, 20 samples)": ["trainer.max_epochs=100", "model.mc_samples=20"],
    "ours, study setting (60 epochs, 10 samples)": [],
}


def _ours(cfg, dataset, picks: torch.Tensor) -> dict[str, float]:
    dm, model, trainer, seconds = fit_on(cfg, dataset, picks)
    metrics = regression_metrics(
        predict(trainer, model, dm.test_dataloader()), dm.truth[dm.test], "test"
    )
    return {
        "mae": metrics["test_mae"],
        "rmse": metrics["test_rmse"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / cfg.trainer.max_epochs,
    }


def _chemprop(python: str, dataset, dm, picks: torch.Tensor, folder: Path) -> dict[str, float]:
    smiles = list(dataset.smiles)
    assert len(smiles) == len(dataset), "one SMILES per dataset position"
    for name, rows in (("train", picks), ("test", dm.test)):
        frame = pd.DataFrame(
            {"smiles": [smiles[i] for i in rows.tolist()], "y": dm.truth[rows].numpy()}
        )
        frame.to_csv(folder / f"{name}.csv", index=False)
    script = Path(__file__).parent / "chemprop_fit.py"
    out = subprocess.run(
        [python, str(script), str(folder / "train.csv"), str(folder / "test.csv")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chemprop-python", required=True, help="a Python with chemprop 2")
    args = parser.parse_args()
    quiet_libraries()
    cfg = study_config()
    dataset = instantiate(cfg.data.dataset)
    dm = instantiate(cfg.data.datamodule, dataset=dataset)
    order = random_pool_order(dm, 0)
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            for name, overrides in SETUPS.items():
                results[name, n] = _ours(study_config(overrides), dataset, order[:n])
                print(f"{name} n={n}: {results[name, n]}", flush=True)
            results["chemprop", n] = _chemprop(
                args.chemprop_python, dataset, dm, order[:n], Path(tmp)
            )
            print(f"chemprop n={n}: {results['chemprop', n]}", flush=True)
    lines = [
        "## QM9 study: default GNN vs chemprop v2 on the study's pool and test set",
        "",
        "The study's data (26,000 molecules: 5,000 test, 1,000 val, 20,000 pool; split seed 0),",
        "nested random training sets from the pool (seed 0), no early stopping, no validation",
        f"split; {torch.get_num_threads()} thread(s) for every model (1-minute load average when",
        f"done: {os.getloadavg()[0]:.1f}). chemprop 2.3 defaults: d_h 300, depth 3, mean",
        "aggregation, batch 64, 50 epochs. Ours: GINE 128 x 3, mean pooling, dropout 0.1, batch",
        "64; prediction is the mean of the MC-dropout samples.",
        "",
        "| labels | model | test MAE (eV) | test RMSE (eV) | fit (s) | s/epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (name, n), r in results.items():
        lines.append(
            f"| {n:,} | {name} | {r['mae']:.3f} | {r['rmse']:.3f} | {r['seconds']:.0f} | "
            f"{r['seconds_per_epoch']:.2f} |"
        )
    write_section(
        "qm9-study-chemprop",
        "\n".join(lines),
        reproduce="python scripts/bench_qm9_study_chemprop.py --chemprop-python PY",
    )


if __name__ == "__main__":
    main()
