"""The on-disk molecule cache: reuse, rebuild on change, atomic builds, streamed formats,
parallel featurisation, and items equal to featurising each molecule directly."""

import gzip
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import torch
from rdkit import Chem

from regal_torch.data import molecule_graphs
from regal_torch.data.molecule_graphs import mol_graph, parse_smiles
from regal_torch.data.molecules import MoleculeDataset
from regal_torch.errors import RegalError


@pytest.fixture
def smiles(qm9_small):
    """300 real QM9 SMILES."""
    return [qm9_small[i].smiles for i in range(len(qm9_small))]


def _write(path, text):
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _table(smiles):
    return "smiles,target\n" + "".join(f"{s},{i / 10}\n" for i, s in enumerate(smiles))


def _folders(cache):
    """The cache folders (not the hidden build locks beside them)."""
    return sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.exists() else []


def _assert_same_items(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        for key in ("x", "edge_index", "edge_attr", "mol_id"):
            assert torch.equal(x[key], y[key]), (i, key)
        assert torch.equal(x.y, y.y) or (x.y.isnan().all() and y.y.isnan().all())
        assert x.smiles == y.smiles


def test_items_equal_featurising_each_molecule_in_memory(tmp_path, smiles):
    text = _table(smiles[:40]).replace(f"{smiles[7]},0.7", "C1CC,0.7")
    ds = MoleculeDataset(str(_write(tmp_path / "m.csv", text)), cache_dir=tmp_path / "c")
    assert len(ds) == 39 and ds.num_node_features == molecule_graphs.ATOM_FEATURE_DIM
    for i in range(len(ds)):
        row = i + (i >= 7)  # row 7 (line 9) is unreadable
        x, edge_index, edge_attr = mol_graph(parse_smiles(smiles[row]))
        item = ds[i]
        assert torch.equal(item.x, torch.from_numpy(x))
        assert torch.equal(item.edge_index, torch.from_numpy(edge_index))
        assert torch.equal(item.edge_attr, torch.from_numpy(edge_attr))
        assert item.y.shape == (1, 1) and item.y.item() == pytest.approx(row / 10)
        assert item.mol_id.tolist() == [row] and item.smiles == smiles[row]
        assert item.x.dtype == item.edge_attr.dtype == torch.float32
    assert ds.smiles[8] == smiles[9] and ds.where[8] == "line 11" and ds.ids[-1] == "row39"
    assert list(ds.smiles[:2]) == smiles[:2] and ds.smiles[-1] == smiles[39]


def test_second_load_reuses_the_cache_and_a_change_rebuilds_it(
    tmp_path, smiles, caplog, monkeypatch
):
    path, cache = _write(tmp_path / "m.csv", _table(smiles[:30])), tmp_path / "c"
    with caplog.at_level(logging.INFO):
        first = MoleculeDataset(str(path), cache_dir=cache)
    assert "featurising into" in caplog.text and len(_folders(cache)) == 1
    meta = cache / _folders(cache)[0] / "meta.json"
    stamp = meta.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = MoleculeDataset(str(path), cache_dir=cache)
    assert "featurising" not in caplog.text and "reusing the molecule cache" in caplog.text
    assert meta.stat().st_mtime_ns == stamp and len(_folders(cache)) == 1
    _assert_same_items(first, again)

    _write(path, _table(smiles[:29] + ["CCCl"]))  # new content: a new cache
    changed = MoleculeDataset(str(path), cache_dir=cache)
    assert len(_folders(cache)) == 2 and changed[29].smiles == "CCCl"
    assert changed[29].x.shape[0] == 3

    newer = molecule_graphs.FEATURIZER_VERSION + 1
    monkeypatch.setattr(molecule_graphs, "FEATURIZER_VERSION", newer)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        MoleculeDataset(str(path), cache_dir=cache)
    assert "featurising into" in caplog.text and len(_folders(cache)) == 3


def test_processes_starting_together_build_the_cache_once(tmp_path, smiles, monkeypatch):
    """The tasks of one DDP run open the same file at once: one builds, the others wait for it
    and reuse it (threads with their own lock descriptors stand in for the processes)."""
    from regal_torch.data import molecule_cache

    builds = []
    build = molecule_cache.build_cache

    def slow_build(*args, **kwargs):
        builds.append(args[1])
        time.sleep(0.5)  # the others arrive while it builds
        return build(*args, **kwargs)

    monkeypatch.setattr(molecule_cache, "build_cache", slow_build)
    path, cache = _write(tmp_path / "m.csv", _table(smiles[:20])), tmp_path / "c"
    datasets = [None] * 3

    def load(i):
        datasets[i] = MoleculeDataset(str(path), cache_dir=cache, num_workers=1)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(_folders(cache)) == 1
    for dataset in datasets[1:]:
        _assert_same_items(datasets[0], dataset)


def test_parallel_build_equals_one_process_and_keeps_file_order(tmp_path, smiles):
    lines = list(smiles)
    lines[5], lines[280] = "not_a_smiles", "C1CC"  # lines 7 and 282, in two chunks
    path = _write(tmp_path / "m.csv", _table(lines))
    one = MoleculeDataset(str(path), cache_dir=tmp_path / "one", num_workers=0)
    two = MoleculeDataset(str(path), cache_dir=tmp_path / "two", num_workers=2)
    assert len(two) == 298
    _assert_same_items(one, two)
    assert two.mol_id[:7].tolist() == [0, 1, 2, 3, 4, 6, 7]
    assert two[297].smiles == smiles[299] and two.where[297] == "line 301"


def test_unreadable_molecules_named_by_line_at_build_and_on_reuse(tmp_path, smiles, caplog):
    lines = list(smiles)
    lines[5], lines[280] = "not_a_smiles", "C1CC"
    path, cache = _write(tmp_path / "m.csv", _table(lines)), tmp_path / "c"
    for _ in range(2):  # built, then read from the cache
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            MoleculeDataset(str(path), cache_dir=cache, num_workers=2)
        assert "skipped 2 unreadable molecules at line 7, line 282" in caplog.text
        with pytest.raises(RegalError, match=r"m.csv: line 7: cannot read molecule 'not_a_"):
            MoleculeDataset(str(path), cache_dir=cache, on_invalid="error")


def test_gzip_and_smi_files_give_the_csv_items(tmp_path, smiles):
    cache = tmp_path / "c"
    csv = MoleculeDataset(
        str(_write(tmp_path / "m.csv", _table(smiles[:20]))), target_column=None, cache_dir=cache
    )
    gz = MoleculeDataset(
        str(_write(tmp_path / "m.csv.gz", _table(smiles[:20]))), target_column=None, cache_dir=cache
    )
    _assert_same_items(csv, gz)
    text = "SMILES name\n" + "".join(f"{s} mol{i}\n" for i, s in enumerate(smiles[:20]))
    for name in ("m.smi", "m.smi.gz"):
        smi = MoleculeDataset(str(_write(tmp_path / name, text)), cache_dir=cache)
        _assert_same_items(csv, smi)
        assert smi.ids[3] == "mol3" and smi.where[3] == "line 5"
        assert torch.isnan(smi.y).all()


def test_smi_names_that_repeat_become_row_numbers(tmp_path, caplog):
    path = _write(tmp_path / "m.smi", "CCO a\n\nCCN a\nc1ccccc1\n")
    with caplog.at_level(logging.WARNING):
        ds = MoleculeDataset(str(path), cache_dir=tmp_path / "c")
    assert list(ds.ids) == ["row0", "row1", "row2"] and list(ds.where) == [
        "line 1",
        "line 3",
        "line 4",
    ]
    assert "names after the SMILES are not unique ('a' at line 1, line 3)" in caplog.text


def test_sdf_goes_through_the_cache(tmp_path, smiles):
    path = tmp_path / "m.sdf"
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(smiles[:10]):
        mol = Chem.MolFromSmiles(s)
        mol.SetProp("_Name", f"m{i}")
        mol.SetProp("gap", str(i))
        writer.write(mol)
    writer.close()
    ds = MoleculeDataset(str(path), target_column="gap", cache_dir=tmp_path / "c")
    assert len(_folders(tmp_path / "c")) == 1 and ds.ids[4] == "m4" and ds.where[4] == "record 5"
    x, edge_index, _ = mol_graph(Chem.SDMolSupplier(str(path))[4])
    assert torch.equal(ds[4].x, torch.from_numpy(x)) and ds[4].y.item() == 4.0
    assert torch.equal(ds[4].edge_index, torch.from_numpy(edge_index))


def test_conflicting_labels_found_across_chunks_and_processes(tmp_path, smiles, caplog):
    rows = [f"{s},{i}" for i, s in enumerate(smiles)]
    mol = Chem.MolFromSmiles(smiles[2])
    rows[290] = f"{Chem.MolToSmiles(mol, doRandom=True, rootedAtAtom=1)},99"  # line 292
    path = _write(tmp_path / "m.csv", "smiles,target\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        MoleculeDataset(str(path), cache_dir=tmp_path / "c", num_workers=2)
    assert "different labels (every row is kept): line 4 (2), line 292 (99)" in caplog.text


def test_a_failed_build_leaves_no_cache(tmp_path, smiles):
    path = _write(tmp_path / "m.csv", _table(smiles) + "CCO,abc\n")
    with pytest.raises(RegalError, match=r"line 302: label 'abc' is not a finite number"):
        MoleculeDataset(str(path), cache_dir=tmp_path / "c", num_workers=2)
    assert _folders(tmp_path / "c") == []


def test_a_killed_build_never_looks_complete_and_is_cleaned_up(tmp_path, smiles):
    path = _write(tmp_path / "m.csv", _table(smiles * 20))  # 6,000 rows
    cache = tmp_path / "c"
    context = multiprocessing.get_context("fork")
    kwargs = {"cache_dir": cache, "num_workers": 1}
    child = context.Process(target=MoleculeDataset, args=(str(path),), kwargs=kwargs)
    child.start()
    deadline = time.monotonic() + 60
    while not any(cache.glob("*.partial-*/atom_codes.raw")) and time.monotonic() < deadline:
        assert child.is_alive()
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)  # mid-build
    child.join()
    names = _folders(cache)
    assert len(names) == 1 and ".partial-" in names[0]  # nothing that looks complete
    ds = MoleculeDataset(str(path), cache_dir=cache, num_workers=2)
    assert len(ds) == 6_000 and len(_folders(cache)) == 1
    assert ".partial-" not in _folders(cache)[0]  # the dead build's leftovers are gone


def test_pickling_keeps_the_folder_not_the_arrays(tmp_path, smiles):
    path = _write(tmp_path / "m.csv", _table(smiles))
    ds = MoleculeDataset(str(path), cache_dir=tmp_path / "c")
    blob = pickle.dumps(ds)
    assert len(blob) < ds.cache.arrays["atom_codes"].nbytes  # smaller than the codes alone
    _assert_same_items(ds, pickle.loads(blob))
    codes = ds.cache.arrays["atom_codes"]  # a read-only view of the mapped file
    assert isinstance(codes.base, np.memmap) and not codes.flags.writeable


def test_a_damaged_gzip_file_is_one_line_naming_where_reading_stopped(tmp_path):
    rows = "".join(f"{'C' * (i % 7 + 1)}O,{i}\n" for i in range(20_000))
    data = _write(tmp_path / "m.csv.gz", "smiles,target\n" + rows).read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RegalError, match=r"cut.csv.gz: line \d+: not a readable gzip file"):
        MoleculeDataset(str(tmp_path / "cut.csv.gz"), cache_dir=tmp_path / "c")
    (tmp_path / "plain.smi.gz").write_text("CCO\n")
    with pytest.raises(RegalError, match=r"plain.smi.gz: line 1: not a readable gzip file"):
        MoleculeDataset(str(tmp_path / "plain.smi.gz"), cache_dir=tmp_path / "c")
    assert _folders(tmp_path / "c") == []


def test_featurising_options_leave_a_runs_fingerprint_alone(tmp_path):
    """Another data.num_workers or data.cache_dir resumes the same run (same molecules)."""
    from conftest import compose_config

    from regal_torch.neutral_keys import fingerprint

    base = ["data=molecules", f"data.path={tmp_path / 'm.csv'}"]
    other = [*base, "data.num_workers=1", f"data.cache_dir={tmp_path}"]
    assert fingerprint(compose_config(base)) == fingerprint(compose_config(other))
    assert fingerprint(compose_config(base)) != fingerprint(
        compose_config([*base, "data.smiles_column=s"])
    )
