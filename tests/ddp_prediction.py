"""Pool prediction and LCMD picks under a DDP Trainer of 2 CPU processes (gloo), for
``tests/test_distributed_prediction.py``: ``python tests/ddp_prediction.py ROOT WEIGHTS OUT``.

Lightning's ``ddp`` strategy starts rank 1 by running this same command again, as it does for
``python -m regal_torch.run trainer=ddp``; every rank saves what it got as ``OUT/rank{r}.pt``.
In pytest's own process that relaunch would re-run the test session, and the processes of
``ddp_spawn`` do not send their predictions back, hence a script.
"""

from __future__ import annotations

import sys

import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler
from torch_geometric.loader import DataLoader

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9 import QM9Dataset
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.models.predict_rows import predict
from regal_torch.run import quiet_trainer
from regal_torch.strategies.base import SelectionContext
from regal_torch.strategies.lcmd import LCMDStrategy

POOL, LABELED, K, BATCH = 131, 20, 10, 16  # an odd pool: a padding sampler repeats a row


def model_of(dataset: QM9Dataset) -> MCDropoutRegressor:
    """The small MC-dropout model whose weights the test saves and this script loads."""
    return MCDropoutRegressor(dataset.num_node_features, dataset.num_edge_features, 16)


def pool_and_picks(trainer: pl.Trainer, model: MCDropoutRegressor, dataset: QM9Dataset) -> dict:
    """LCMD's prediction over the pool (the first :data:`POOL` pool molecules after
    :data:`LABELED` labeled ones) and the labeled set, and its :data:`K` picks."""
    dm = ActiveDataModule(dataset, "gap", val_size=0, test_size=0, predict_batch_size=BATCH)
    labeled, pool = dm.pool[:LABELED], dm.pool[LABELED : LABELED + POOL]
    strategy = LCMDStrategy()
    on_pool = predict(trainer, model, dm.loader(pool), strategy.request())
    on_labeled = predict(trainer, model, dm.loader(labeled), strategy.request())
    context = SelectionContext(
        pool=pool,
        labeled=labeled,
        generator=torch.Generator().manual_seed(0),
        labeled_prediction=on_labeled,
        labeled_targets=dm.truth[labeled],
    )
    picks = strategy.select(on_pool, K, context)
    return {"mean": on_pool.mean, "embedding": on_pool.embedding, "picks": picks}


def main(root: str, weights: str, out: str) -> None:
    dataset = QM9Dataset(root, subset=300, log=False)
    model = model_of(dataset)
    model.load_state_dict(torch.load(weights))
    trainer = quiet_trainer(1, devices=2, strategy="ddp")
    result = pool_and_picks(trainer, model, dataset)
    # A sampler that pads the last shard with a repeated row (Lightning keeps a loader's
    # own DistributedSampler): the repeat is dropped by its dataset position.
    loader = ActiveDataModule(dataset, "gap", val_size=0, test_size=0).loader(
        torch.arange(LABELED, LABELED + POOL)
    )
    padded = DataLoader(
        loader.dataset, batch_size=BATCH, sampler=DistributedSampler(loader.dataset, shuffle=False)
    )
    result["padded_mean"] = predict(trainer, model, padded, LCMDStrategy().request()).mean
    result["world_size"] = trainer.world_size
    torch.save(result, f"{out}/rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
