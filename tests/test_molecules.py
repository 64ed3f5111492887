"""A user's CSV and SDF files: featurisation and one-line errors for bad input."""

import logging

import pytest
import torch
from rdkit import Chem

from regal_torch.data.featurize import ATOM_FEATURE_DIM
from regal_torch.data.molecules import MoleculeDataset
from regal_torch.errors import RegalError

GOOD = (
    "smiles,target,name\n"
    "CCO,1.5,ethanol\nClC(Br)I,2.0,halo\nc1ccsc1,,thiophene\nOP(=O)(O)O,-3,acid\n"
)


def _csv(tmp_path, text, name="mols.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_featurises_every_row_with_labels_and_ids(tmp_path):
    ds = MoleculeDataset(str(_csv(tmp_path, GOOD)), id_column="name")
    assert len(ds) == 4 and ds.num_node_features == ATOM_FEATURE_DIM
    assert ds.ids == ["ethanol", "halo", "thiophene", "acid"]
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
    ],
)
def test_bad_csv_gives_one_clear_line(tmp_path, text, kwargs, message):
    with pytest.raises(RegalError, match=message) as info:
        MoleculeDataset(str(_csv(tmp_path, text)), **kwargs)
    assert "\n" not in str(info.value) and "mols.csv" in str(info.value)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(RegalError, match="no such file"):
        MoleculeDataset(str(tmp_path / "absent.csv"))
    with pytest.raises(RegalError, match="expected a .csv or .sdf"):
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
    assert ds.ids == ["a", "b"] and ds.y.view(-1)[0].item() == 1.25
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
