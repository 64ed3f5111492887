"""What pool prediction costs per round for what each strategy asks of the model.

Predicts ``--molecules`` QM9 molecules (default 5,000) with the full-scale study's model
(``experiment=qm9_gap_full``: GINE MC-dropout, 10 dropout samples, prediction batches of 200)
through ``trainer.predict`` on one thread, once per kind of request, and scales the time to the
study's pool (119,831 molecules; prediction time is linear in the number of molecules). Weights
are untrained: the cost does not depend on them. Writes the ``pool-prediction`` section of
BENCHMARKS.md.

    python scripts/bench_pool_prediction.py [--molecules N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.run import CONFIG_DIR

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

STUDY_POOL = 119_831
REQUESTS = [
    ("every field, MC-dropout (before: every strategy)", PredictionRequest()),
    ("mean + var (uncertainty, learn mode)", PredictionRequest(frozenset({"var"}))),
    (
        "mean + embedding, one pass (lcmd, maxdist, kmeanspp, ...)",
        PredictionRequest(frozenset({"embedding"})),
    ),
    ("gradients, sketch 512 (kernel=grad)", PredictionRequest(frozenset({"gradients"}), 512)),
    ("gradients, sketch 256", PredictionRequest(frozenset({"gradients"}), 256)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--molecules", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                "experiment=qm9_gap_full",
                f"data.subset={args.molecules + 200}",
                "data.datamodule.test_size=100",
                "data.datamodule.val_size=100",
            ],
        )
    dataset = instantiate(cfg.data.dataset, root=tempfile.mkdtemp())
    dm = instantiate(cfg.data.datamodule, dataset=dataset)
    pl.seed_everything(0, verbose=False)
    model = instantiate(cfg.model)(
        node_dim=dataset.num_node_features, edge_dim=dataset.num_edge_features
    )
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    pool = dm.pool[: args.molecules]
    loader = dm.loader(pool)
    rows = []
    for name, request in REQUESTS:
        start = time.perf_counter()
        predict(trainer, model, loader, request)
        seconds = time.perf_counter() - start
        rows.append((name, seconds))
    base = rows[0][1]
    lines = [
        "## Pool prediction: what each strategy asks of the model",
        "",
        f"{len(pool):,} QM9 molecules through `trainer.predict`, the full-scale study's model "
        "(GINE MC-dropout, hidden 128, 10 dropout samples, batches of 200), one thread; "
        f"per round at the study's pool of {STUDY_POOL:,} scaled linearly. `strategy=random` "
        "predicts no pool at all (0 s). Load average when done: "
        f"{os.getloadavg()[0]:.1f} (the sweeps shared the cores: compare the ratios).",
        "",
        "| request | seconds | per round at 119,831 (s) | vs every field |",
        "| --- | --- | --- | --- |",
    ]
    for name, seconds in rows:
        per_round = seconds * STUDY_POOL / len(pool)
        lines.append(f"| {name} | {seconds:.2f} | {per_round:.0f} | {seconds / base:.2f}x |")
    write_section(
        "pool-prediction", "\n".join(lines), reproduce="python scripts/bench_pool_prediction.py"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
