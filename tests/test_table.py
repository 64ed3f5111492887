"""data=table: a real numeric table (tests/data/diabetes_150.csv), its errors, every model on
it, every strategy in the loop, learn mode."""

from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import compose_config, quiet_trainer
from hydra.utils import instantiate

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.table import TableDataset
from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.loop.round_setup import round_model
from regal_torch.loop.seeds import INITIAL, round_seed
from regal_torch.models.dkl import DeepKernelGP
from regal_torch.models.ensemble import EnsembleRegressor
from regal_torch.models.evidential import EvidentialRegressor
from regal_torch.models.gp import FingerprintGP
from regal_torch.models.laplace import LaplaceRegressor
from regal_torch.models.mc_dropout import MCDropoutRegressor
from regal_torch.models.mean_variance import MeanVarianceRegressor
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.models.target_scaling import TargetScaler
from regal_torch.run import CONFIG_DIR
from regal_torch.strategies.base import SelectionContext

DIABETES = Path(__file__).parent / "data" / "diabetes_150.csv"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def diabetes() -> TableDataset:
    return TableDataset(str(DIABETES), "target")


def test_every_numeric_column_but_the_target_is_a_feature(diabetes):
    frame = pd.read_csv(DIABETES)
    assert len(diabetes) == 150 and diabetes.feature_names == FEATURES
    assert diabetes.num_node_features == 10 and diabetes.num_edge_features is None
    assert torch.allclose(diabetes.x, torch.tensor(frame[FEATURES].to_numpy(), dtype=torch.float))
    assert diabetes.y[:3, 0].tolist() == [151.0, 75.0, 141.0]
    assert diabetes.ids[:2] == ["row0", "row1"] and diabetes.where[:2] == ["line 2", "line 3"]
    assert diabetes.mol_id.tolist() == list(range(150))


def test_chosen_features_an_id_column_and_text_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,note,a,b,y\nr1,x,1,2,3\nr2,y,2,5,\n\nr3,z,3,1,4\n")
    table = TableDataset(str(path), "y", id_column="name")
    assert table.feature_names == ["a", "b"]  # the text column "note" is left out
    assert table.ids == ["r1", "r2", "r3"] and table.where == ["line 2", "line 3", "line 5"]
    assert torch.isnan(table.y[1, 0]) and table.smiles == ["", "", ""]
    chosen = TableDataset(str(path), "y", feature_columns=["b"], id_column="name")
    assert chosen.x[:, 0].tolist() == [2.0, 5.0, 1.0]


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("a,b,y\n1,2,3\n1,x,4\n", {}, r"t.csv: line 3: feature column 'b': 'x' is not a finite"),
        ("a,b,y\n1,2,3\n\n1,,4\n", {}, r"t.csv: line 4: feature column 'b': is empty"),
        ("a,b,y\n1,2,3\n1,inf,4\n", {}, r"line 3: feature column 'b': 'inf' is not a finite"),
        ("a,b,y\n1,2,3\n1,2,abc\n", {}, r"line 3: label column 'y': 'abc' is not a finite"),
        ("a,b,y\n1,2,3\n", {"feature_columns": ["a", "bb"]}, r"no column 'bb' \(data.feature_"),
        ("a,b,y\n1,2,3\n", {"target_column": "yy"}, r"no column 'yy'.*did you mean 'y'"),
        ("id,a,y\nq,1,2\nq,2,3\n", {"id_column": "id"}, r"duplicate id 'q' at line 2, line 3"),
        ("n,y\nx,1\n", {}, r"no numeric feature column besides the target 'y'"),
    ],
)
def test_bad_values_and_columns_are_one_line_naming_line_and_column(
    tmp_path, text, options, message
):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(RegalError, match=message) as info:
        TableDataset(str(path), **{"target_column": "y", **options})
    assert "\n" not in str(info.value)


def _fitted(table, factory, epochs=60):
    dm = ActiveDataModule(table, "target", val_size=10, test_size=40, batch_size=32)
    dm.label(dm.pool, dm.truth[dm.pool])
    pl.seed_everything(0)
    model = factory(**dm.model_inputs(), target_scaling=TargetScaler(*dm.target_scaling()))
    quiet_trainer(epochs).fit(model, datamodule=dm)
    return dm, model


@pytest.mark.parametrize(
    "name", ["mc_dropout", "ensemble", "mean_variance", "laplace", "evidential", "dkl", "gp"]
)
def test_every_model_fits_a_table_better_than_the_mean(diabetes, name):
    factory = {
        "mc_dropout": lambda **kw: MCDropoutRegressor(hidden_dim=32, mc_samples=5, **kw),
        "ensemble": lambda **kw: EnsembleRegressor(members=3, hidden_dim=32, **kw),
        "mean_variance": lambda **kw: MeanVarianceRegressor(hidden_dim=32, **kw),
        "laplace": lambda **kw: LaplaceRegressor(hidden_dim=32, **kw),
        "evidential": lambda **kw: EvidentialRegressor(hidden_dim=32, **kw),
        "dkl": lambda **kw: DeepKernelGP(hidden_dim=32, feature_dim=4, lr=1e-2, **kw),
        "gp": lambda **kw: FingerprintGP(fit_iters=50, **kw),
    }[name]
    dm, model = _fitted(diabetes, factory)
    networks = name not in ("dkl", "gp")
    fields = {"mean", "var", "embedding"} | ({"gradients"} if networks else set())
    request = PredictionRequest(frozenset(fields), sketch_dim=16)
    pred = predict(quiet_trainer(1), model, dm.loader(dm.test), request)
    truth = dm.truth[dm.test]
    mae, mean_mae = (pred.mean - truth).abs().mean(), (truth - truth.mean()).abs().mean()
    assert mae < 0.9 * mean_mae, (name, mae, mean_mae)
    assert (pred.var > 0).all() and pred.embedding.shape[0] == 40
    if "gradients" in fields:
        assert pred.gradients.shape == (40, 16) and pred.gradients.abs().sum() > 0
    if name == "gp":  # one length scale per feature
        assert model.gp.covar_module.base_kernel.lengthscale.shape == (1, 10)


def test_features_are_standardised_on_the_labeled_rows_inside_the_model(diabetes, tmp_path):
    """The same table with one column in other units (x 1000, shifted) gives the same model:
    the standardisation is fitted on the labeled rows and applied at prediction too."""
    frame = pd.read_csv(DIABETES)
    frame["bmi"] = frame["bmi"] * 1000 + 50
    path = tmp_path / "units.csv"
    frame.to_csv(path, index=False)
    other = TableDataset(str(path), "target")
    predictions = []
    for table in (diabetes, other):
        dm, model = _fitted(table, lambda **kw: FingerprintGP(fit_iters=30, **kw))
        labeled = table.x[dm.labeled]
        assert torch.allclose(model.feature_scaler.mean, labeled.mean(0), atol=1e-3)
        predictions.append(predict(quiet_trainer(1), model, dm.loader(dm.test)).mean)
    assert torch.allclose(predictions[0], predictions[1], rtol=1e-3, atol=1e-2)


def _tiny(path, *extra):
    return [
        "model=mc_dropout",  # (a later model= or strategy= wins)
        "strategy=lcmd",
        "loop.local_neighbours=null",
        "data=table",
        f"data.path={path}",
        "data.target_column=target",
        "data.datamodule.test_size=20",
        "data.datamodule.val_size=10",
        "loop.initial_size=10",
        "loop.batch_size=5",
        "loop.rounds=1",
        "trainer.max_epochs=1",
        "progress=false",
        *extra,
    ]


STRATEGIES = sorted(p.stem for p in (Path(CONFIG_DIR) / "strategy").glob("*.yaml"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_unchanged_on_a_table(tmp_path, strategy):
    overrides = _tiny(DIABETES, f"strategy={strategy}", "model.hidden_dim=8", "model.mc_samples=3")
    cfg = compose_config(overrides)
    loop = ActiveLoop(cfg, tmp_path)
    history = loop.run()
    assert [row["n_labeled"] for row in history] == [10, 15]
    picked = pd.read_csv(tmp_path / "selected.csv")
    assert (picked["round"] == 1).sum() == 5 and picked["position"].is_unique


def test_warm_start_takes_each_rounds_target_and_feature_scaling(tmp_path):
    """The previous round's weights are loaded, but not its scalings (they were round 0's
    for every round before the fix)."""
    overrides = _tiny(DIABETES, "strategy=random", "model=gp", "loop.warm_start=true")
    loop = ActiveLoop(compose_config([*overrides, "loop.rounds=2"]), tmp_path)
    loop.run()
    model = round_model(loop.cfg, loop.dm, 2, loop.weights)
    labeled = loop.dm.labeled
    assert torch.allclose(model.feature_scaler.mean, loop.dataset.x[labeled].mean(0))
    assert model.target_mean.item() == pytest.approx(loop.dm.labels[labeled].mean().item())
    trained = loop.weights["gp.covar_module.raw_outputscale"]
    assert torch.equal(model.gp.covar_module.raw_outputscale, trained)  # the weights are loaded


def test_learn_mode_on_a_table(tmp_path):
    frame = pd.read_csv(DIABETES).head(60)
    frame.insert(0, "patient", [f"p{i}" for i in range(60)])
    frame["target"] = frame["target"].astype(object)
    frame.loc[40:, "target"] = ""  # 20 rows to label
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    overrides = _tiny(path, "mode=learn", "data.id_column=patient", "loop.rounds=2")
    overrides += ["model.hidden_dim=8"]
    overrides += ["data.datamodule.test_size=5", "data.datamodule.val_size=5"]
    run_dir = tmp_path / "run"
    loop = ActiveLoop(compose_config(overrides), run_dir)
    assert loop.run()[0]["n_labeled"] == 30  # 40 labeled rows less 5 val and 5 test
    query = run_dir / "queries" / "round_001.csv"
    asked = pd.read_csv(query, keep_default_na=False)
    assert len(asked) == 5 and all(int(i[1:]) >= 40 for i in asked["id"])
    assert (asked["smiles"] == "").all() and (asked["predicted_std"].astype(float) > 0).all()
    asked.loc[[0, 1, 2], "label"] = ["100", "150", "200"]
    asked.to_csv(query, index=False)
    loop = ActiveLoop(compose_config(overrides), run_dir)
    history = loop.run()
    assert [row["n_labeled"] for row in history] == [30, 33]
    selected = pd.read_csv(run_dir / "selected.csv")
    assert sorted(selected.loc[selected["round"] == 1, "label"]) == [100.0, 150.0, 200.0]
    assert (run_dir / "queries" / "round_002.csv").is_file()


def test_cold_start_on_a_table_scales_the_untrained_network_on_the_pool(tmp_path):
    cfg = compose_config(_tiny(DIABETES, "loop/initial_strategy=kmeanspp", "model.hidden_dim=8"))
    loop = ActiveLoop(cfg, tmp_path).open()
    everyone = torch.arange(len(loop.dataset))
    pool = everyone[~torch.isin(everyone, torch.cat([loop.dm.test, loop.dm.val]))]
    seed = round_seed(cfg.seed, 0, INITIAL)
    strategy = instantiate(cfg.loop.initial_strategy)
    picks = {}
    for scaled in (True, False):
        pl.seed_everything(seed, verbose=False)
        inputs = loop.dm.model_inputs(pool)
        if not scaled:
            del inputs["feature_scaling"]
        model = instantiate(cfg.model)(**inputs)
        prediction = predict(quiet_trainer(1), model, loop.dm.loader(pool), strategy.request())
        context = SelectionContext(
            pool=pool,
            labeled=torch.empty(0, dtype=torch.long),
            generator=torch.Generator().manual_seed(seed),
        )
        picks[scaled] = strategy.select(prediction, 10, context)
    assert torch.equal(loop.dm.labeled.sort().values, picks[True].sort().values)
    assert not torch.equal(picks[True].sort().values, picks[False].sort().values)


def test_cold_start_on_fingerprints_is_refused_for_a_table(tmp_path):
    overrides = _tiny(
        DIABETES, "loop/initial_strategy=kmeanspp", "loop.initial_features=fingerprint"
    )
    with pytest.raises(RegalError, match="fingerprint needs molecules, and this data is a table"):
        ActiveLoop(compose_config(overrides), tmp_path).open()
