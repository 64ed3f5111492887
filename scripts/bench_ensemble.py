"""Train a deep ensemble of M members in one module vs M sequential single-model fits.

Same architecture per member (GINE, hidden 128, 3 layers, no dropout), same labeled set,
epochs and batches; writes the ``ensemble`` section of BENCHMARKS.md.

    python scripts/bench_ensemble.py [--members 5] [--labels 1000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9 import QM9Dataset
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.run import quiet_trainer

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402


def _fit_seconds(model: pl.LightningModule, dm: ActiveDataModule, epochs: int) -> float:
    trainer = quiet_trainer(epochs, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    root = os.environ.get("REGAL_TORCH_DATA", tempfile.gettempdir() + "/regal_torch_bench")
    dataset = QM9Dataset(f"{root}/qm9", subset=10000, log=False)
    dm = ActiveDataModule(dataset, "gap")
    dm.label(dm.pool[: args.labels], dm.truth[dm.pool[: args.labels]])
    dims = dataset.num_node_features, dataset.num_edge_features
    pl.seed_everything(0, verbose=False)
    together = _fit_seconds(EnsembleRegressor(*dims, members=args.members), dm, args.epochs)
    sequential = sum(
        _fit_seconds(MCDropoutRegressor(*dims, dropout=0.0), dm, args.epochs)
        for _ in range(args.members)
    )
    lines = [
        "## Deep ensemble: members trained together vs one after another",
        "",
        f"{args.members} GINE members (hidden 128, 3 layers, no dropout), {args.labels} labeled "
        f"QM9 molecules, {args.epochs} epochs, batch 64, no validation, 2 CPU cores "
        f"(1-minute load average when done: {os.getloadavg()[0]:.1f}; above 2 means other "
        "jobs shared the cores).",
        "",
        "| fit | seconds |",
        "| --- | --- |",
        f"| `EnsembleRegressor(members={args.members})`, one Trainer.fit | {together:.1f} |",
        f"| {args.members} x `MCDropoutRegressor(dropout=0)`, one fit each | {sequential:.1f} |",
        f"| ratio sequential / together | {sequential / together:.2f} |",
        "",
        "Reproduce: `python scripts/bench_ensemble.py "
        f"--members {args.members} --labels {args.labels} --epochs {args.epochs}`",
    ]
    write_section("ensemble", "\n".join(lines))


if __name__ == "__main__":
    main()
