"""ActiveDataModule invariants on a real QM9 subset."""

import pytest
import torch

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.errors import RegalError


@pytest.fixture
def dm(qm9_small):
    return ActiveDataModule(qm9_small, target="gap", val_size=0.1, test_size=50, batch_size=16)


def _sets(dm):
    return [dm.labeled, dm.pool, dm.val, dm.test]


def test_splits_are_disjoint_and_cover_the_dataset(dm, qm9_small):
    n = len(qm9_small)
    assert len(dm.test) == 50 and len(dm.val) == round(0.1 * n) and len(dm.labeled) == 0
    everything = torch.cat(_sets(dm))
    assert everything.numel() == n and everything.unique().numel() == n


def test_split_is_seeded(qm9_small):
    a = ActiveDataModule(qm9_small, "gap", split_seed=0)
    b = ActiveDataModule(qm9_small, "gap", split_seed=0)
    c = ActiveDataModule(qm9_small, "gap", split_seed=1)
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)


def test_label_moves_pool_to_labeled_and_conserves_totals(dm, qm9_small):
    picks = dm.pool[[0, 5, 7]]
    dm.label(picks, dm.truth[picks])
    assert dm.labeled.tolist() == picks.tolist()
    assert not torch.isin(picks, dm.pool).any()
    everything = torch.cat(_sets(dm))
    assert everything.numel() == len(qm9_small) and everything.unique().numel() == len(qm9_small)
    assert torch.equal(dm.labels[picks], dm.truth[picks])


def test_label_refuses_bad_input(dm):
    picks = dm.pool[:2]
    with pytest.raises(RegalError, match="non-finite"):
        dm.label(picks, torch.tensor([1.0, float("nan")]))
    with pytest.raises(RegalError, match="not in the pool"):
        dm.label(dm.test[:1], torch.tensor([1.0]))
    dm.label(picks, torch.tensor([1.0, 2.0]))
    with pytest.raises(RegalError, match="not in the pool"):
        dm.label(picks[:1], torch.tensor([1.0]))


def test_target_scaling_uses_labeled_molecules_only(dm):
    picks = dm.pool[:4]
    dm.label(picks, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    mean, std = dm.target_scaling()
    assert mean == pytest.approx(2.5) and std == pytest.approx(
        torch.tensor([1.0, 2, 3, 4]).std(correction=0).item()
    )


def test_loaders_carry_targets_in_original_units(dm):
    picks = dm.pool[:20]
    dm.label(picks, dm.truth[picks])
    ys = torch.cat([b.y for b in dm.train_dataloader()])
    assert sorted(ys.tolist()) == sorted(dm.truth[picks].tolist())
    test_y = torch.cat([b.y for b in dm.test_dataloader()])
    assert torch.equal(test_y, dm.truth[dm.test])
    assert sum(b.num_graphs for b in dm.predict_dataloader()) == len(dm.pool)


def test_unknown_target_and_oversized_splits_are_refused(qm9_small):
    with pytest.raises(RegalError, match="data.target='gpa'"):
        ActiveDataModule(qm9_small, "gpa")
    with pytest.raises(RegalError, match="leave no pool"):
        ActiveDataModule(qm9_small, "gap", val_size=0.5, test_size=0.5)
