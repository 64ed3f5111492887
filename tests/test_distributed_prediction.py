"""Pool prediction across processes: each DDP process predicts whole batches of its shard and
every process ends with all rows in dataset order, equal to one process's, and so the same
picks."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer
from ddp_prediction import model_of, pool_and_picks
from torch_geometric.loader import DataLoader

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.models.predict_rows import BatchShards, predict
from regal_torch.models.prediction import PredictionRequest

SCRIPT = Path(__file__).with_name("ddp_prediction.py")


@pytest.mark.parametrize("rows", [1, 7, 131])
@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("replicas", [2, 3])
def test_shards_are_the_one_process_batches_in_order(rows, batch_size, replicas):
    dataset = range(rows)
    samplers = [BatchShards(dataset, batch_size, replicas, r) for r in range(replicas)]
    shards = [list(s) for s in samplers if not s.padding]
    assert sum(shards, []) == list(dataset)  # every row once, in order
    # a process without a batch of its own predicts the last row, which it does not send
    padded = [list(s) for s in samplers if s.padding]
    assert len(padded) == max(0, replicas - -(-rows // batch_size))
    assert all(shard == [rows - 1] for shard in padded)
    assert shards[0]  # rank 0 has a batch, so it can tell the others the fields
    # each shard, cut into batches, is a run of the batches one process predicts
    batches = [list(range(s, min(s + batch_size, rows))) for s in range(0, rows, batch_size)]
    for shard in shards:
        cut = [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]
        assert all(batch in batches for batch in cut)
    assert [len(s) for s in samplers] == [len(list(s)) for s in samplers]


def test_rows_are_written_at_their_dataset_positions(qm9_small):
    """A shuffled loader's rows come back in dataset order (what gathering shards relies on)."""
    dm = ActiveDataModule(qm9_small, "gap", val_size=0, test_size=0, predict_batch_size=1)
    model = model_of(qm9_small)
    model.set_target_scaling(5.0, 2.0)
    request = PredictionRequest(frozenset({"embedding"}))
    ordered_loader = dm.loader(dm.pool[:40])
    shuffled_loader = DataLoader(ordered_loader.dataset, batch_size=1, shuffle=True)
    trainer = quiet_trainer(1)
    ordered = predict(trainer, model, ordered_loader, request)
    shuffled = predict(trainer, model, shuffled_loader, request)
    assert torch.equal(shuffled.mean, ordered.mean)
    assert torch.equal(shuffled.embedding, ordered.embedding)


@pytest.mark.slow
def test_two_processes_give_the_one_process_rows_and_picks(qm9_root, qm9_small, tmp_path):
    torch.manual_seed(0)
    model = model_of(qm9_small)
    model.set_target_scaling(5.0, 2.0)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    args = [sys.executable, str(SCRIPT), qm9_root, str(tmp_path / "weights.pt"), str(tmp_path)]
    subprocess.run(args, check=True, timeout=600, capture_output=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    one = pool_and_picks(quiet_trainer(1), model, qm9_small)
    for got in ranks:
        assert got["world_size"] == 2
        # a deterministic pass over the same batches: bit-for-bit the same rows and picks
        for name in ("mean", "embedding", "picks"):
            assert torch.equal(got[name], one[name]), name
        # a padding sampler's repeated row is dropped; rows back in dataset order
        assert torch.allclose(got["padded_mean"], one["mean"], atol=1e-6)
