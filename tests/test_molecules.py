"""A user's CSV and SDF files: featurisation and one-line errors for bad input."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from regal_torch.data.molecule_graphs import ATOM_FEATURE_DIM
from regal_torch.data.molecules import MoleculeDataset
from regal_torch.errors import RegalError

GOOD = (
    "smiles,target,name\n"
    "CCO,1.5,ethanol\nClC(Br)I,2.0,halo\nc1ccsc1,,thiophene\nOP(=O)(O)O,-3,acid\n"
)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Molecule caches go to the test's folder, not the user's ~/.cache."""
    monkeypatch.setenv("REGAL_TORCH_DATA", str(tmp_path / "cache"))


def _csv(tmp_path, text, name="mols.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_featurises_every_row_with_labels_and_ids(tmp_path):
    ds = MoleculeDataset(str(_csv(tmp_path, GOOD)), id_column="name")
    assert len(ds) == 4 and ds.num_node_features == ATOM_FEATURE_DIM
    assert list(ds.ids) == ["ethanol", "halo", "thiophene", "acid"]
    assert ds.target_names == ["target"]
    y = ds.y.view(-1)
    assert y[[0, 1, 3]].tolist() == [1.5, 2.0, -3.0] and torch.isnan(y[2])
    assert ds.mol_id.view(-1).tolist() == [0, 1, 2, 3]
    assert ds[1].x.shape[0] == 4  # Cl, C, Br, I: elements outside QM9 featurise


def test_unparseable_smiles_are_skipped_with_a_warning_naming_lines(tmp_path, caplog):
    path = _csv(tmp_path, "smiles,target\nCCO,1\nC1CC,2\nCCN,3\nnot_a_smiles,4\n")
    with caplog.at_level(logging.WARNING):
        ds = MoleculeDataset(str(path))
    assert len(ds) == 2 and ds.mol_id.view(-1).tolist() == [0, 2]
    assert "line 3, line 5" in caplog.text


def test_unparseable_smiles_refused_with_on_invalid_error(tmp_path):
    path = _csv(tmp_path, "smiles,target\nCCO,1\nC1CC,2\n")
    with pytest.raises(RegalError, match=r"line 3: cannot read molecule 'C1CC'"):
        MoleculeDataset(str(path), on_invalid="error")


@pytest.mark.parametrize(
    "text,kwargs,message",
    [
        (
            "smile,target\nCCO,1\n",
            {},
            r"no column 'smiles' \(data.smiles_column\); did you mean 'smile'",
        ),
        (
            "smiles,targt\nCCO,1\n",
            {},
            r"no column 'target' \(data.target_column\); did you mean 'targt'",
        ),
        ("smiles,target\nCCO,abc\n", {}, r"line 2: label 'abc' is not a finite number"),
        ("smiles,target\nCCO,1\nCCC,inf\n", {}, r"line 3: label 'inf' is not a finite number"),
        (
            "smiles,target,id\nCCO,1,a\nCCC,2,a\n",
            {"id_column": "id"},
            r"duplicate id 'a' at line 2, line 3",
        ),
        ("smiles,target\nC1CC,1\n", {}, r"no readable molecule"),
        ("smiles,target\n", {}, r"no readable molecule"),
    ],
)
def test_bad_csv_gives_one_clear_line(tmp_path, text, kwargs, message):
    with pytest.raises(RegalError, match=message) as info:
        MoleculeDataset(str(_csv(tmp_path, text)), **kwargs)
    assert "\n" not in str(info.value) and "mols.csv" in str(info.value)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(RegalError, match="no such file"):
        MoleculeDataset(str(tmp_path / "absent.csv"))
    with pytest.raises(RegalError, match=r"expected a .csv, .smi or .sdf file \(each may end"):
        MoleculeDataset(str(_csv(tmp_path, GOOD, "mols.txt")))


def test_sdf_reads_structures_property_labels_and_titles(tmp_path):
    path = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(path))
    for name, smiles, gap in (("a", "CCO", "1.25"), ("b", "c1ccccc1Cl", None)):
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", name)
        if gap is not None:
            mol.SetProp("gap", gap)
        writer.write(mol)
    writer.close()
    ds = MoleculeDataset(str(path), target_column="gap")
    assert list(ds.ids) == ["a", "b"] and ds.y.view(-1)[0].item() == 1.25
    assert torch.isnan(ds.y.view(-1)[1]) and ds[1].x.shape[0] == 7
    with pytest.raises(
        RegalError, match=r"no property 'gpa' \(data.target_column\); did you mean 'gap'"
    ):
        MoleculeDataset(str(path), target_column="gpa")


def test_benchmark_mode_refuses_unlabeled_molecules(tmp_path):
    from regal_torch.data.datamodule import ActiveDataModule
    from regal_torch.loop.oracle import BenchmarkOracle

    ds = MoleculeDataset(str(_csv(tmp_path, GOOD)))
    dm = ActiveDataModule(ds, "target", val_size=0, test_size=0)
    with pytest.raises(RegalError, match=r"1 have none \(dataset positions 2\)"):
        BenchmarkOracle(dm.truth)
    labeled = BenchmarkOracle(dm.truth[[0, 1, 3]])
    assert labeled.query(torch.tensor([2])).item() == -3.0


def test_line_numbers_count_blank_lines(tmp_path, caplog):
    text = "smiles,target\n\nCCO,1\n\n\nC1CC,2\nCCN,abc\n"
    with pytest.raises(RegalError, match=r"line 7: label 'abc' is not a finite number"):
        MoleculeDataset(str(_csv(tmp_path, text)))
    path = _csv(tmp_path, "smiles,target\n\nCCO,1\n\n\nC1CC,2\nCCN,3\n")
    with caplog.at_level(logging.WARNING):
        ds = MoleculeDataset(str(path))
    assert "unreadable molecules at line 6" in caplog.text
    assert list(ds.where) == ["line 3", "line 7"] and ds.mol_id.view(-1).tolist() == [0, 2]
    with pytest.raises(RegalError, match=r"line 6: cannot read molecule 'C1CC'"):
        MoleculeDataset(str(path), on_invalid="error")


def test_unquoted_decimal_comma_names_the_field_count(tmp_path):
    path = _csv(tmp_path, 'smiles,label\nCCO,"1,5"\nCCN,1,5\n')
    with pytest.raises(RegalError) as info:
        MoleculeDataset(str(path), target_column="label")
    assert str(info.value) == (
        f"{path}: line 3: 3 fields, but the header has 2 (smiles,label); quote a field that "
        'holds a comma (a decimal comma: "1,5"), or write 1.5'
    )


def test_short_rows_and_trailing_commas_are_read(tmp_path):
    ds = MoleculeDataset(str(_csv(tmp_path, "smiles,target,name\nCCO,1.5,a,,\nCCN\n")))
    assert ds.y.view(-1)[0].item() == 1.5 and torch.isnan(ds.y.view(-1)[1])


def test_a_repeated_id_is_named_in_a_short_line(tmp_path):
    text = "smiles,target,id\n" + "".join(f"{'C' * (i % 5 + 1)},1,x\n" for i in range(500))
    with pytest.raises(RegalError, match=r"duplicate id 'x' at line 2, line 3, .*\(500 in all\)"):
        MoleculeDataset(str(_csv(tmp_path, text)), id_column="id")


def test_sdf_records_sharing_one_title_get_record_numbers(tmp_path, caplog):
    path = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(path))
    for i in range(300):
        mol = Chem.MolFromSmiles("C" * (i + 1))
        mol.SetProp("_Name", "Untitled")
        mol.SetProp("name", "same")
        mol.SetProp("gap", str(i))
        writer.write(mol)
    writer.close()
    with caplog.at_level(logging.WARNING):
        ds = MoleculeDataset(str(path), target_column="gap")
    assert ds.ids[:3] == ["row0", "row1", "row2"] and len(set(ds.ids)) == 300
    assert "record titles are not unique ('Untitled' at record 1, record 2" in caplog.text
    assert len(caplog.text) < 500
    with pytest.raises(RegalError, match=r"duplicate id 'same' at record 1, .*\(300 in all\)"):
        MoleculeDataset(str(path), target_column="gap", id_column="name")  # ids you name: kept


def test_same_molecule_with_different_labels_warns_naming_rows(tmp_path, caplog):
    text = "smiles,target\nCCO,1\nOCC,2\nCCN,3\nNCC,3\nC,\nC,4\n"
    with caplog.at_level(logging.WARNING):
        ds = MoleculeDataset(str(_csv(tmp_path, text)))
    assert len(ds) == 6  # every row is kept
    assert "same molecule with different labels (every row is kept): line 2 (1), line 3 (2)" in (
        caplog.text
    )
    assert "line 4" not in caplog.text and "line 6" not in caplog.text  # same label / no label


def test_benchmark_mode_names_the_file_lines_without_a_label(tmp_path):
    from regal_torch.data.datamodule import ActiveDataModule
    from regal_torch.loop.oracle import BenchmarkOracle

    ds = MoleculeDataset(str(_csv(tmp_path, "smiles,target\n\nCCO,1\nCCN,\nCCC,\n")))
    dm = ActiveDataModule(ds, "target", val_size=0, test_size=0)
    with pytest.raises(RegalError, match=r"2 have none \(line 4, line 5 of data.path\)"):
        BenchmarkOracle(dm.truth, ds.where)


def test_benchmark_run_names_the_file_lines_without_a_label(qm9_small, tmp_path):
    """Passes once ActiveLoop._oracle passes the dataset's ``where`` to BenchmarkOracle
    (regal_torch/loop/active_loop.py, wired by the loop's owner)."""
    from conftest import compose_config

    from regal_torch.loop.active_loop import ActiveLoop

    rows = [f"{qm9_small[i].smiles},{'' if i in (3, 7) else 1.0}" for i in range(40)]
    path = _csv(tmp_path, "smiles,target\n\n" + "\n".join(rows) + "\n")
    cfg = compose_config(
        ["data=molecules", f"data.path={path}", "loop.initial_size=10", "loop.batch_size=2"]
    )
    with pytest.raises(RegalError, match=r"2 have none \(line 6, line 10 of data.path\)"):
        ActiveLoop(cfg, tmp_path / "run").open()


def test_a_glob_or_a_list_of_files_is_one_pool_in_order(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    _csv(shards, "smiles,target\nCCO,1\nCCN,2\n", "a.csv")
    _csv(shards, "smiles,target\nc1ccccc1,3\n", "b.csv")
    (shards / "c.smi").write_text("CC(=O)O acetic\n")
    pool = MoleculeDataset(str(shards / "*.csv"))
    assert list(pool.smiles) == ["CCO", "CCN", "c1ccccc1"]
    assert pool.y.view(-1).tolist() == [1.0, 2.0, 3.0]
    assert list(pool.ids) == ["a.csv:row0", "a.csv:row1", "b.csv:row0"]  # unique across files
    assert list(pool.where) == ["a.csv line 2", "a.csv line 3", "b.csv line 2"]
    assert pool[2].x.shape[0] == 6 and pool[2].y.item() == 3.0  # benzene, from b.csv's cache
    listed = MoleculeDataset([str(shards / "b.csv"), str(shards / "c.smi")], target_column=None)
    assert list(listed.smiles) == ["c1ccccc1", "CC(=O)O"]
    assert list(listed.ids) == ["b.csv:row0", "acetic"]  # the .smi file's own names kept
    one = MoleculeDataset(str(shards / "a.csv"))  # one file: its ids as before
    assert list(one.ids) == ["row0", "row1"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nothing*.csv", "no file matches"),
        ([], r"data.path=\[\]: name at least one file"),
        (["a.csv", "a.csv"], "named twice in data.path"),
        (["a.csv", "absent.csv"], "absent.csv: no such file"),
    ],
)
def test_bad_lists_of_files_are_one_line(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path, "smiles,target\nCCO,1\n", "a.csv")
    with pytest.raises(RegalError, match=message):
        MoleculeDataset(path)


def test_an_id_in_two_files_is_refused_naming_both(tmp_path):
    _csv(tmp_path, "smiles,target,name\nCCO,1,m1\nCCN,2,m2\n", "a.csv")
    _csv(tmp_path, "smiles,target,name\nCCC,3,m2\n", "b.csv")
    with pytest.raises(RegalError, match=r"id 'm2' is in .*a.csv and in .*b.csv \(line 2\)"):
        MoleculeDataset(str(tmp_path / "*.csv"), id_column="name")


def test_a_run_reads_a_library_in_two_files(qm9_small, tmp_path):
    from conftest import compose_config

    from regal_torch.loop.active_loop import ActiveLoop

    rows = [f"{qm9_small[i].smiles},{qm9_small[i].y[0, 4].item()}" for i in range(60)]
    _csv(tmp_path, "smiles,target\n" + "\n".join(rows[:35]) + "\n", "part1.csv")
    _csv(tmp_path, "smiles,target\n" + "\n".join(rows[35:]) + "\n", "part2.csv")
    cfg = compose_config([
        "data=molecules", f"data.path={tmp_path}/part*.csv", "data.features=[]",
        "model=mc_dropout", "model.hidden_dim=8", "model.mc_samples=2", "trainer.max_epochs=1",
        "loop.initial_size=10", "loop.batch_size=5", "loop.rounds=1",
        "loop.local_neighbours=null", "data.datamodule.val_size=10",
        "data.datamodule.test_size=10",
    ])  # fmt: skip
    ActiveLoop(cfg, tmp_path / "run").run()
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(predictions) == 60 and predictions["id"].is_unique
    assert predictions["id"].iloc[[0, 35]].tolist() == ["part1.csv:row0", "part2.csv:row0"]
    known = predictions["label"].notna().to_numpy()  # the labels the run revealed
    truth = np.array([float(r.split(",")[1]) for r in rows])
    assert known.sum() >= 15 and predictions["label"][known].to_numpy() == pytest.approx(
        truth[known]
    )
