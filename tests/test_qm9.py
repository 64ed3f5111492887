"""QM9 from qm9pack (small real subsets) and the RDKit featurizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from regal_torch.data.molecule_graphs import (
    ATOM_FEATURE_DIM,
    BOND_FEATURE_DIM,
    featurize_smiles_batch,
    mol_graph,
    smiles_to_data,
)
from regal_torch.data.qm9 import QM9Dataset, subset_positions
from regal_torch.data.qm9_tables import (
    HAR2EV,
    QM9_SIZE,
    QM9_TARGETS,
    read_qm9_table,
    target_index,
)

METHANE, DICYANOACETYLENE, DIACETYLENE = 1, 486, 23  # QM9 indices
ELEMENT_SLOTS = {1: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5, 14: 6, 15: 7, 16: 8, 17: 9, 35: 10, 53: 11}
SLOT_TO_Z = torch.tensor(list(ELEMENT_SLOTS))


@pytest.fixture(scope="session")
def qm9_picked(tmp_path_factory: pytest.TempPathFactory) -> QM9Dataset:
    ids = [DICYANOACETYLENE, METHANE, DIACETYLENE]
    return QM9Dataset(str(tmp_path_factory.mktemp("qm9_picked")), only_indices=ids, log=False)


def _item(dataset: QM9Dataset, mol_id: int):
    ids = [int(dataset[i].mol_id) for i in range(len(dataset))]
    return dataset[ids.index(mol_id)]


def _bond_lengths(data) -> torch.Tensor:
    return (data.pos[data.edge_index[0]] - data.pos[data.edge_index[1]]).norm(dim=1)


def test_item_shapes_and_dtypes(qm9_small):
    assert len(qm9_small) == 300
    for i in (0, 1, 150, 299):
        d = qm9_small[i]
        v, e = d.num_nodes, d.edge_index.shape[1]
        assert d.x.shape == (v, ATOM_FEATURE_DIM) and d.x.dtype == torch.float32
        assert d.edge_index.shape == (2, e) and d.edge_index.dtype == torch.int64
        assert e % 2 == 0 and (d.edge_index < v).all() and (d.edge_index >= 0).all()
        assert torch.equal(d.edge_index[:, 0::2], d.edge_index.flip(0)[:, 1::2])
        assert d.edge_attr.shape == (e, BOND_FEATURE_DIM) and d.edge_attr.dtype == torch.float32
        assert d.pos.shape == (v, 3) and d.pos.dtype == torch.float32
        assert d.z.shape == (v,) and d.z.dtype == torch.int64
        assert d.y.shape == (1, 19) and d.y.dtype == torch.float32
        assert d.mol_id.dtype == torch.int64 and isinstance(d.smiles, str)
    ids = torch.cat([qm9_small[i].mol_id for i in range(len(qm9_small))])
    assert (ids.diff() > 0).all()  # sorted by QM9 index


def test_graph_features_equal_featurizer(qm9_small):
    for i in range(0, 300, 15):
        d = qm9_small[i]
        x, edge_index, edge_attr = mol_graph(Chem.MolFromSmiles(d.smiles))
        assert torch.equal(d.x, torch.from_numpy(x))
        assert torch.equal(d.edge_index, torch.from_numpy(edge_index))
        assert torch.equal(d.edge_attr, torch.from_numpy(edge_attr))


def test_positions_agree_with_graph(qm9_small):
    for i in range(len(qm9_small)):
        d = qm9_small[i]
        assert torch.equal(SLOT_TO_Z[d.x[:, :12].argmax(1)], d.z), d.smiles
        assert (_bond_lengths(d) < 2.0).all(), d.smiles


def test_target_names():
    expected = (
        "mu alpha homo lumo gap r2 zpve U0 U H G cv U0_atom U_atom H_atom G_atom A B C".split()
    )
    assert QM9_TARGETS == tuple(expected)


def test_dataset_target_names(qm9_small):
    assert qm9_small.target_names == QM9_TARGETS


def test_methane_targets(qm9_picked):
    y = _item(qm9_picked, METHANE).y[0].double().tolist()
    assert y[target_index("gap")] == pytest.approx(13.736, abs=1e-3)
    assert y[target_index("gap")] == pytest.approx(0.5048 * HAR2EV, rel=1e-6)
    assert y[target_index("U0")] == pytest.approx(-40.47893 * HAR2EV, rel=1e-6)
    assert y[target_index("U0_atom")] == pytest.approx(-17.172, abs=2e-3)
    # U, H, G minus their own atom references (QM9 atomref table, hartree).
    refs_ha = {"U": (-37.845355, -0.498857), "H": (-37.844411, -0.497912),
               "G": (-37.861317, -0.510927)}  # fmt: skip
    for name, (c, h) in refs_ha.items():
        expected = y[target_index(name)] - (c + 4 * h) * HAR2EV
        assert y[target_index(f"{name}_atom")] == pytest.approx(expected, abs=2e-3)
    assert y[target_index("alpha")] == pytest.approx(13.21, abs=1e-4)
    assert y[target_index("A")] == pytest.approx(157.7118, abs=1e-3)


def test_atom_matching_dicyanoacetylene(qm9_picked):
    d = _item(qm9_picked, DICYANOACETYLENE)
    assert d.smiles == "N#CC#CC#N"
    assert d.z.tolist() == [7, 6, 6, 6, 6, 7]
    assert torch.equal(SLOT_TO_Z[d.x[:, :12].argmax(1)], d.z)
    assert (_bond_lengths(d) < 1.7).all()
    assert DICYANOACETYLENE in qm9_picked.build_info["remapped"]
    # same elements in both orders, but the XYZ lists the carbons in another order
    d = _item(qm9_picked, DIACETYLENE)
    assert (_bond_lengths(d) < 1.7).all()


def test_subset_positions():
    a = subset_positions(QM9_SIZE, 300, 0)
    assert a.dtype == torch.int64 and a.shape == (300,) and (a.diff() > 0).all()
    assert torch.equal(a, subset_positions(QM9_SIZE, 300, 0))
    assert not torch.equal(a, subset_positions(QM9_SIZE, 300, 1))
    assert set(subset_positions(QM9_SIZE, 100, 0).tolist()) <= set(a.tolist())
    with pytest.raises(ValueError):
        subset_positions(10, 11, 0)


def test_subset_reproducible(qm9_small, tmp_path):
    def ids(ds):
        return [int(ds[i].mol_id) for i in range(len(ds))]

    small = ids(qm9_small)
    index = read_qm9_table()["Index"].to_numpy()
    assert small == index[subset_positions(QM9_SIZE, 300, 0).numpy()].tolist()
    assert ids(QM9Dataset(str(tmp_path / "again"), subset=300, log=False)) == small
    other = QM9Dataset(str(tmp_path), subset=300, subset_seed=1, log=False)
    assert ids(other) != small
    smaller = QM9Dataset(str(tmp_path), subset=100, log=False)
    assert set(ids(smaller)) < set(small)
    names = sorted(p.name for p in (tmp_path / "processed").glob("qm9_*.pt"))
    assert names == ["qm9_sub100_seed0.pt", "qm9_sub300_seed1.pt"]


def test_target_index():
    assert target_index("gap") == 4
    assert target_index("U0_atom") == 12
    with pytest.raises(ValueError, match="'gpa'") as err:
        target_index("gpa")
    assert "Did you mean 'gap'?" in str(err.value)
    assert "U0_atom" in str(err.value)  # lists the valid names


@pytest.mark.parametrize(
    ("smiles", "elements"),
    [("ClC(Br)I", [9, 2, 10, 11]), ("c1ccsc1", [2, 2, 2, 8, 2]), ("OP(=O)(O)O", [4, 7, 4, 4, 4]),
     ("[Se]", [12])],
)  # fmt: skip
def test_featurize_elements_outside_qm9(smiles, elements):
    d = smiles_to_data(smiles)
    n_bonds = Chem.MolFromSmiles(smiles).GetNumBonds()
    assert d.x.shape == (len(elements), ATOM_FEATURE_DIM)
    assert d.edge_index.shape == (2, 2 * n_bonds)
    assert d.edge_attr.shape == (2 * n_bonds, BOND_FEATURE_DIM)
    assert d.smiles == smiles
    assert d.x[:, :13].argmax(1).tolist() == elements
    assert (d.x[:, :13].sum(1) == 1).all()


def test_atom_and_bond_slots():
    x, _, edge_attr = mol_graph(Chem.MolFromSmiles("c1ccsc1"))
    assert (x[:, 13] == 1).all() and (x[:, 35] == 1).all() and (x[:, 15] == 1).all()
    assert (edge_attr == [0, 0, 0, 1, 1, 1]).all()
    x, _, _ = mol_graph(Chem.MolFromSmiles("C"))  # methane: 4 H, degree 0, SP3, neutral
    assert x[0].nonzero()[0].tolist() == [2, 16, 21, 28, 29]
    x, _, edge_attr = mol_graph(Chem.MolFromSmiles("CC(=O)[O-]"))
    assert x[3, 20] == 1 and x[2, 21] == 1 and x[1, 32] == 1  # charge -1, 0; degree 3
    assert edge_attr[2:4, :4].tolist() == [[0, 1, 0, 0]] * 2  # C=O is double
    x, _, edge_attr = mol_graph(Chem.MolFromSmiles("C#N"))
    assert x[0, 14] == 1 and edge_attr[0].tolist() == [0, 0, 1, 0, 0, 0]
    x, _, _ = mol_graph(Chem.MolFromSmiles("F[S](F)(F)(F)(F)F"))  # SP3D2, degree 6 -> 5+
    assert x[1, 18] == 1 and x[1, 34] == 1 and x[1, 24] == 1


@pytest.mark.parametrize("bad", ["C1CC", "not a molecule", ""])
def test_invalid_smiles(bad):
    with pytest.raises(ValueError, match=f"cannot parse SMILES {bad!r}"):
        smiles_to_data(bad)
    with pytest.raises(ValueError, match=f"cannot parse SMILES {bad!r}"):
        featurize_smiles_batch(["CCO", bad])


def test_cache_is_loaded_not_rebuilt(tmp_path, monkeypatch):
    built = QM9Dataset(str(tmp_path), subset=50, log=False)
    assert built.build_info is not None  # a fresh folder: built

    def fail(self):
        raise AssertionError("process() called although the cache exists")

    monkeypatch.setattr(QM9Dataset, "process", fail)
    again = QM9Dataset(str(tmp_path), subset=50, log=False)
    assert again.build_info is None
    assert torch.equal(again._data.x, built._data.x)
    assert again[7].smiles == built[7].smiles


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="subset"):
        QM9Dataset(str(tmp_path), subset=0, log=False)
    with pytest.raises(ValueError, match="either subset or only_indices"):
        QM9Dataset(str(tmp_path), subset=5, only_indices=[1], log=False)
    with pytest.raises(ValueError, match=r"no QM9 molecule with index \[2000000\]"):
        QM9Dataset(str(tmp_path), only_indices=[1, 2_000_000], log=False)


def test_batch_featurizer_counts():
    out = featurize_smiles_batch(["C", "CCO", "c1ccccc1"])
    assert out["num_atoms"].tolist() == [1, 3, 6]
    assert out["num_bonds"].tolist() == [0, 2, 6]
    assert out["atom_codes"].shape == (10, 7) and out["ends"].shape == (8, 2)
    assert np.array_equal(out["num_hs"], [4, 3, 2, 1, 1, 1, 1, 1, 1, 1])
