"""What a run leaves its user: predictions for every molecule, the saved model, the intervals,
and ``regal_torch.predict`` on a new file."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.outputs.model_file import load_model
from regal_torch.predict import predict_file
from regal_torch.run import quiet_trainer
from regal_torch.uncertainty.conformal import conformal_quantile, interval_metrics
from regal_torch.uncertainty.local_calibration import NeighbourCalibration


def test_conformal_coverage_on_a_problem_with_known_noise_is_within_its_tolerance():
    generator = torch.Generator().manual_seed(0)
    level, trials, n_val, n_test = 0.9, 200, 500, 2000
    covered = []
    for _ in range(trials):  # heteroscedastic noise, known std
        std_val = 0.2 + torch.rand(n_val, generator=generator)
        std_test = 0.2 + torch.rand(n_test, generator=generator)
        y_val = torch.randn(n_val, generator=generator) * std_val
        y_test = torch.randn(n_test, generator=generator) * std_test
        zeros_val, zeros_test = torch.zeros(n_val), torch.zeros(n_test)
        m = interval_metrics(zeros_test, std_test, y_test, zeros_val, std_val, y_val, level)
        covered.append(m["test_coverage"])
    mean = sum(covered) / trials
    # finite-sample guarantee: E[coverage] in [c, c + 1/(n+1)]; binomial spread of the mean
    spread = math.sqrt(level * (1 - level) * (1 / n_test + 1 / n_val) / trials)
    assert level - 3 * spread <= mean <= level + 1 / (n_val + 1) + 3 * spread
    # with the true std the interval is narrower on average than the constant-width one
    assert m["test_interval_width"] < m["test_interval_width_const"]
    assert conformal_quantile(torch.arange(1.0, 9.0), 0.9) == math.inf  # ceil(9 * 0.9) > 8
    assert conformal_quantile(torch.arange(1.0, 20.0), 0.9) == 18.0


def _gp_overrides(tiny):
    return [o for o in tiny if not o.startswith("model.")] + ["model=gp", "loop.rounds=1"]


@pytest.mark.parametrize("local", [[], ["loop.local_neighbours=0.3"]])
def test_a_run_writes_predictions_for_every_molecule_and_its_model(tiny, tmp_path, local):
    loop = ActiveLoop(compose_config([*_gp_overrides(tiny), *local]), tmp_path)
    loop.run()
    table = pd.read_csv(tmp_path / "predictions.csv", dtype={"id": str})
    dm = loop.dm
    assert len(table) == len(loop.dataset)
    assert list(table.columns) == ["id", "smiles", "set", "label", "mean", "std", "lower", "upper"]
    counts = table["set"].value_counts().to_dict()
    assert counts == {"pool": len(dm.pool), "test": len(dm.test), "labeled": len(dm.labeled),
                      "val": len(dm.val)}  # fmt: skip
    assert table.loc[table["set"] == "pool", "label"].isna().all()
    assert table.loc[table["set"] != "pool", "label"].notna().all()
    assert (table["lower"] < table["mean"]).all() and (table["mean"] < table["upper"]).all()
    # the interval's coverage on test is the one history.csv records
    test = table[table["set"] == "test"]
    covered = ((test["label"] >= test["lower"]) & (test["label"] <= test["upper"])).mean()
    history = pd.read_csv(tmp_path / "history.csv")
    assert covered == pytest.approx(history["test_coverage"].iloc[-1], abs=1e-9)
    assert history["interval"].iloc[-1] == 0.9

    # the saved model reloads and predicts exactly what the run's last round predicted
    model, extras = load_model(tmp_path / "model.ckpt")
    calibration = extras["calibration"]
    assert (calibration.local is not None) == bool(local)
    trainer = quiet_trainer(1)
    request = PredictionRequest(frozenset(("mean", "var", "embedding")))
    again = predict(trainer, model, dm.loader(torch.arange(len(loop.dataset))), request)
    # (the CSV holds each float32 in its shortest exact form)
    assert torch.equal(torch.from_numpy(table["mean"].to_numpy()).float(), again.mean)
    if local:  # the local std of each molecule, from the saved validation errors
        var = NeighbourCalibration.from_state(calibration.local).variance(again)
        assert history["test_nll_local"].notna().all()
    else:
        var = again.var * calibration.var_scale
    std = torch.from_numpy(table["std"].to_numpy()).float()
    assert torch.equal(std, var.sqrt())

    # regal_torch.predict on a file of some of the molecules gives the in-run predictions
    chosen = table.sample(30, random_state=0)
    new = tmp_path / "new.csv"
    chosen[["id", "smiles"]].rename(columns={"id": "name"}).to_csv(new, index=False)
    written = predict_file(tmp_path, **_options(new, **{"data.id_column": "name"}))
    predicted = pd.read_csv(written, dtype={"id": str}).set_index("id")
    expected = chosen.set_index("id")
    for column in ("mean", "std", "lower", "upper"):
        torch.testing.assert_close(
            torch.tensor(predicted.loc[expected.index, column].to_numpy()),
            torch.tensor(expected[column].to_numpy()),
            rtol=0, atol=1e-5,
        )  # fmt: skip


def _options(path, **more):
    return {"data.path": str(path), **more}


def test_a_file_that_does_not_match_the_run_is_refused_in_one_line(tmp_path):
    table = tmp_path / "table.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 10, "b": [0.5, 1.5, 2.5, 3.5] * 10,
                  "target": list(range(40))}).to_csv(table, index=False)  # fmt: skip
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "regal_torch.run", "model=mc_dropout", "data=table",
           f"data.path={table}",
           "data.datamodule.test_size=5", "data.datamodule.val_size=5", "loop.initial_size=5",
           "loop.batch_size=5", "loop.rounds=0", "trainer.max_epochs=1", "model.hidden_dim=8",
           "model.mc_samples=2", "progress=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1.0], "c": [2.0]}).to_csv(other, index=False)
    out = subprocess.run(
        [sys.executable, "-m", "regal_torch.predict", str(run_dir), f"data.path={other}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr == (
        f"error: {other}: no column 'b' of the run's features (1 of 2 missing); "
        "the run read ['a', 'b']\n"
    )
    from regal_torch.predict import parse

    with pytest.raises(RegalError, match="unknown option 'sizes=3'"):
        parse([str(run_dir), f"data.path={table}", "sizes=3"])
    with pytest.raises(RegalError, match="unknown option 'data.pth' for this run's data"):
        predict_file(run_dir, **_options(table, **{"data.pth": "x"}))
    with pytest.raises(RegalError, match="no saved model"):
        predict_file(tmp_path, **_options(table))


def test_a_large_table_is_written_as_parts_that_replace_the_single_file(tmp_path):
    from regal_torch.outputs.predictions import write_table

    frame = pd.DataFrame({"id": [f"m{i}" for i in range(25)], "mean": range(25)})
    single = write_table(tmp_path / "predictions.csv", frame, chunk_rows=100)
    assert single == tmp_path / "predictions.csv" and len(pd.read_csv(single)) == 25
    folder = write_table(tmp_path / "predictions.csv", frame, chunk_rows=10)
    assert folder == tmp_path / "predictions" and not single.exists()
    parts = sorted(folder.iterdir())
    assert [p.name for p in parts] == [f"part-0000{i}.parquet" for i in range(3)]
    assert pd.read_parquet(folder)["id"].tolist() == frame["id"].tolist()  # one table
    assert write_table(tmp_path / "predictions.csv", frame, chunk_rows=100).exists()
    assert not folder.exists() and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_predict_gives_the_run_s_predictions_for_molecules_whose_features_failed(
    qm9_small, tmp_path
):
    pytest.importorskip("tblite")
    cage = "C1OC23CN(C2)CC13"  # ETKDG finds no embedding: its xTB features fail
    smiles = [qm9_small[i].smiles for i in range(60)] + [cage]
    labels = [float(qm9_small[i].y[0, 4]) for i in range(60)] + [7.0]
    file = tmp_path / "mols.csv"
    pd.DataFrame({"smiles": smiles, "target": labels}).to_csv(file, index=False)
    overrides = [
        "data=molecules", f"data.path={file}", "data.features=[xtb]", "model=gp",
        f"data.cache_dir={tmp_path / 'cache' / 'molecules'}", "data.num_workers=1",
        "data.datamodule.test_size=10", "data.datamodule.val_size=10", "loop.initial_size=20",
        "loop.batch_size=5", "loop.rounds=0", "trainer.max_epochs=5", "progress=false",
    ]  # fmt: skip
    loop = ActiveLoop(compose_config(overrides), tmp_path / "run")
    loop.run()
    features = loop.dataset.molecule_features
    assert list(features.failures["xtb"].values()) == ["ValueError: ETKDG found no 3D embedding"]
    table = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"id": str})
    written = predict_file(tmp_path / "run", **_options(file, **{"data.target_column": "null"}))
    again = pd.read_csv(written, dtype={"id": str})
    assert again["smiles"].tolist() == table["smiles"].tolist()
    for column in ("mean", "std", "lower", "upper"):
        np.testing.assert_allclose(again[column], table[column], rtol=0, atol=1e-5)
    assert np.isfinite(table.loc[table["smiles"] == cage, "mean"]).all()
