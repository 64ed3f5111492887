"""Train chemprop v2 with its defaults and score it; run with a Python that has chemprop.

    python scripts/chemprop_fit.py TRAIN.csv TEST.csv [EPOCHS]

Both CSVs have columns ``smiles,y``. chemprop 2.3 defaults: bond message passing (d_h 300,
depth 3), mean aggregation, regression FFN on standardised targets, batch 64, 50 epochs, no
early stopping and no validation split (every training molecule is used). Prints one JSON
line: test MAE and RMSE, fit seconds and seconds per epoch. Called by
``scripts/bench_qm9_study_chemprop.py`` (chemprop lives in its own environment, because its
``lightning`` pins need not match ours).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import torch
from chemprop import data, featurizers, models, nn
from lightning import pytorch as pl


def _dataset(frame: pd.DataFrame, featurizer) -> data.MoleculeDataset:
    points = [
        data.MoleculeDatapoint.from_smi(s, [y]) for s, y in zip(frame.smiles, frame.y, strict=True)
    ]
    return data.MoleculeDataset(points, featurizer)


def main(train_csv: str, test_csv: str, epochs: int = 50) -> None:
    torch.manual_seed(0)
    featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()
    train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
    train_set, test_set = _dataset(train, featurizer), _dataset(test, featurizer)
    scaler = train_set.normalize_targets()
    model = models.MPNN(
        nn.BondMessagePassing(),
        nn.MeanAggregation(),
        nn.RegressionFFN(output_transform=nn.UnscaleTransform.from_standard_scaler(scaler)),
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, data.build_dataloader(train_set, seed=0))
    seconds = time.perf_counter() - start
    loader = data.build_dataloader(test_set, shuffle=False)
    predicted = torch.cat(trainer.predict(model, loader)).squeeze(-1).numpy()
    error = predicted - test.y.to_numpy()
    result = {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
