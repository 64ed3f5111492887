"""Default GNN vs chemprop's numbers on QM9 gap, on chemprop's protocol.

Random training sets of 1,000 and 2,200 molecules, a fixed random test set of 5,000 drawn
with seed 0 from all 130,831 molecules, the default model and trainer configs. Writes the
``gnn-accuracy`` section of BENCHMARKS.md.

    python scripts/bench_gnn_accuracy.py [hydra overrides, e.g. model.hidden_dim=256]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from regal_torch.models.predict_rows import predict
from regal_torch.overrides import CONFIG_DIR
from regal_torch.quiet import quiet_libraries
from regal_torch.uncertainty.metrics import regression_metrics

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

SIZES = (1000, 2200)
CHEMPROP = {1000: (0.292, 0.410, 43), 2200: (0.244, 0.337, 105)}  # MAE, RMSE, seconds


def main(overrides: list[str]) -> None:
    quiet_libraries()
    base = [  # the GINE network without molecule features, as this comparison was made
        "model=mc_dropout",
        "data.features=[]",
        "data.subset=null",
        "data.datamodule.test_size=5000",
        "data.datamodule.val_size=1000",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=base + overrides)
    dataset = instantiate(cfg.data.dataset)
    rows = []
    for n in SIZES:
        dm = instantiate(cfg.data.datamodule, dataset=dataset)
        picks = dm.pool[
            torch.randperm(len(dm.pool), generator=torch.Generator().manual_seed(0))[:n]
        ]
        dm.label(picks, dm.truth[picks])
        pl.seed_everything(0, verbose=False)
        model = instantiate(cfg.model)(
            node_dim=dataset.num_node_features, edge_dim=dataset.num_edge_features
        )
        trainer = instantiate(cfg.trainer)(limit_val_batches=0)
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - start
        test = predict(trainer, model, dm.test_dataloader())
        metrics = regression_metrics(test, dm.truth[dm.test], "test")
        rows.append((n, metrics["test_mae"], metrics["test_rmse"], seconds, cfg.trainer.max_epochs))
        print(
            f"n={n}: MAE {metrics['test_mae']:.3f} eV, RMSE {metrics['test_rmse']:.3f} eV, "
            f"{seconds:.0f} s",
            flush=True,
        )
    lines = [
        "## Default GNN vs chemprop v2 on QM9 gap (random labels)",
        "",
        "chemprop's protocol (chemprop v2 2.3.1, measured here): fixed random test set of"
        " 5,000 (split seed 0) from all",
        "130,831 molecules, random training sets (seed 0), no early stopping, 2 CPU threads",
        f"(1-minute load average when done: {os.getloadavg()[0]:.1f}; above 2 means other jobs",
        "shared the cores and the times are inflated).",
        f"Model: `{_describe(cfg)}`; mean of {cfg.model.mc_samples} MC-dropout samples.",
        "",
        "| labels | ours MAE (eV) | ours RMSE (eV) | ours time (s) | s/epoch | chemprop MAE | "
        "chemprop RMSE | chemprop time (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, mae, rmse, seconds, epochs in rows:
        c_mae, c_rmse, c_s = CHEMPROP[n]
        lines.append(
            f"| {n:,} | {mae:.3f} | {rmse:.3f} | {seconds:.0f} | {seconds / epochs:.2f} | "
            f"{c_mae:.3f} | {c_rmse:.3f} | {c_s} |"
        )
    lines += [
        "",
        f"Reproduce: `python scripts/bench_gnn_accuracy.py {' '.join(overrides)}`".rstrip(),
    ]
    write_section("gnn-accuracy", "\n".join(lines))


def _describe(cfg) -> str:
    m, t = cfg.model, cfg.trainer
    return (
        f"GINE hidden {m.hidden_dim}, {m.num_layers} layers, {m.pooling} pooling, dropout "
        f"{m.dropout}, lr {m.lr}, batch {cfg.data.datamodule.batch_size}, {t.max_epochs} epochs"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
