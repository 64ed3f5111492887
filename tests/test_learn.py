"""Learn mode: run, fill in the query file (partly), re-run, and so on; bad answers refused."""

import shlex
import subprocess
import sys

import pandas as pd
import pytest
from conftest import compose_config

from regal_torch.errors import RegalError
from regal_torch.loop.active_loop import ActiveLoop
from regal_torch.status import main as status_main


@pytest.fixture
def csv(qm9_small, tmp_path):
    """60 QM9 molecules with ids; the first 40 carry their gap, the last 20 none."""
    rows = [
        f"m{i},{qm9_small[i].smiles},{qm9_small.y[i, 4].item() if i < 40 else ''}"
        for i in range(60)
    ]
    path = tmp_path / "mine.csv"
    path.write_text("name,smiles,gap\n" + "\n".join(rows) + "\n")
    return path


def _overrides(csv, *extra):
    return [
        "data=molecules",
        f"data.path={csv}",
        "data.target_column=gap",
        "data.id_column=name",
        "data.datamodule.val_size=4",
        "data.datamodule.test_size=4",
        "mode=learn",
        "loop.batch_size=5",
        "loop.rounds=2",
        "trainer.max_epochs=1",
        "model.hidden_dim=16",
        "model.mc_samples=4",
        "model=mc_dropout",
        "data.features=[]",
        "loop.local_neighbours=null",
        *extra,
    ]


def _fill(path, values):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for i, value in values.items():
        frame.loc[i, "label"] = value
    frame.to_csv(path, index=False)


def test_learn_loop_run_fill_rerun(csv, tmp_path):
    run_dir = tmp_path / "run"
    loop = ActiveLoop(compose_config(_overrides(csv)), run_dir)
    assert loop.run()[0]["n_labeled"] == 32  # 40 labeled rows less 4 val and 4 test
    held_out = set(loop.dm.val.tolist()) | set(loop.dm.test.tolist())
    assert held_out <= set(range(40))  # val and test come from labeled rows only
    query = run_dir / "queries" / "round_001.csv"
    assert loop.pending_query == query
    frame = pd.read_csv(query, keep_default_na=False)
    assert list(frame.columns) == ["id", "smiles", "predicted_mean", "predicted_std", "label"]
    assert len(frame) == 5 and (frame["label"] == "").all()
    assert all(int(i[1:]) >= 40 for i in frame["id"])  # picked from the unlabeled rows

    with pytest.raises(RegalError, match="no label filled in yet"):
        ActiveLoop(compose_config(_overrides(csv)), run_dir).open()

    _fill(query, {0: "1.5", 2: "2.5", 4: "3.5"})  # two rows left empty
    loop = ActiveLoop(compose_config(_overrides(csv)), run_dir).open()
    assert len(loop.dm.labeled) == 35
    unfilled = frame["id"][[1, 3]].map(lambda i: int(i[1:])).tolist()
    assert set(unfilled) <= set(loop.dm.pool.tolist())  # back in the pool
    loop.run()
    selected = pd.read_csv(run_dir / "selected.csv")
    given = selected[selected["round"] == 1]
    assert sorted(given["label"]) == [1.5, 2.5, 3.5]  # the user's labels are kept in the run

    second = pd.read_csv(run_dir / "queries" / "round_002.csv", keep_default_na=False)
    answers = tmp_path / "answers.csv"
    answers.write_text("id,label\n" + "".join(f"{i},0.5\n" for i in second["id"]))
    loop = ActiveLoop(compose_config(_overrides(csv, f"labels={answers}")), run_dir)
    history = loop.run()
    assert [row["n_labeled"] for row in history] == [32, 35, 40]
    assert loop.pending is None


def test_answers_for_molecules_not_queried_are_refused(csv, tmp_path):
    ActiveLoop(compose_config(_overrides(csv)), tmp_path).run()
    answers = tmp_path / "answers.csv"
    answers.write_text("id,label\nm0,1.0\n")
    with pytest.raises(RegalError, match="line 2: id 'm0' was not queried"):
        ActiveLoop(compose_config(_overrides(csv, f"labels={answers}")), tmp_path).open()


def test_batch_larger_than_pool_and_empty_pool(csv, qm9_small, tmp_path):
    with pytest.raises(RegalError, match=r"loop.batch_size \(21\) is larger than the pool \(20"):
        ActiveLoop(compose_config(_overrides(csv, "loop.batch_size=21")), tmp_path / "a")
    full = tmp_path / "full.csv"
    full.write_text("smiles,gap\n" + "".join(f"{qm9_small[i].smiles},1.0\n" for i in range(30)))
    with pytest.raises(RegalError, match="the pool is empty"):
        ActiveLoop(compose_config(_overrides(full, "data.id_column=null")), tmp_path / "b")


def test_command_says_which_file_to_fill_and_how_to_continue(csv, tmp_path, capsys):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "regal_torch.run", *_overrides(csv), f"hydra.run.dir={run_dir}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"fill in the 'label' column of {run_dir / 'queries' / 'round_001.csv'}" in out.stdout
    assert "then re-run:\n  python -m regal_torch.run data=molecules" in out.stdout
    query = run_dir / "queries" / "round_001.csv"
    assert status_main([str(run_dir)]) == 0
    assert f"pending query: 5 molecules to label in {query}" in capsys.readouterr().out


def test_printed_command_resumes_the_run_from_any_folder(csv, tmp_path):
    """The command names the run folder and the user's Hydra options (here a search path for
    an own strategy config), quoted for the shell; pasted elsewhere it resumes the run."""
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "mine.yaml").write_text(
        "_target_: regal_torch.strategies.random.RandomStrategy\n"
    )
    run_dir = tmp_path / "my run"
    overrides = [
        *_overrides(csv, "loop.rounds=1", "strategy=mine"),
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"hydra.run.dir={run_dir}",
    ]
    cmd = [sys.executable, "-m", "regal_torch.run", *overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    printed = shlex.split(out.stdout.split("then re-run:\n")[1].splitlines()[0])
    assert printed[:3] == ["python", "-m", "regal_torch.run"]
    assert printed[-1] == f"hydra.run.dir={run_dir}"

    _fill(run_dir / "queries" / "round_001.csv", {0: "1.5", 1: "2.5"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = subprocess.run(
        [sys.executable, *printed[1:]], capture_output=True, text=True, timeout=300, cwd=elsewhere
    )
    assert again.returncode == 0, again.stderr
    assert "2 of 5 queried molecules labeled" in again.stdout
    assert list(elsewhere.iterdir()) == []  # no new run started here
    assert pd.read_csv(run_dir / "history.csv")["n_labeled"].tolist() == [32, 34]


def _contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_starting_over_never_erases_the_users_labels(csv, tmp_path):
    """state.pt moved away (as the corrupt-state error advises): the re-run would start over
    and write round_001.csv and selected.csv anew; it is refused, naming them."""
    run_dir = tmp_path / "run"
    overrides = _overrides(csv, "loop.rounds=1")
    ActiveLoop(compose_config(overrides), run_dir).run()
    _fill(run_dir / "queries" / "round_001.csv", {0: "1.5", 2: "2.5", 4: "3.5"})
    ActiveLoop(compose_config(overrides), run_dir).run()  # takes the 3 labels, last round
    (run_dir / "state.pt").rename(tmp_path / "state.pt.bad")
    before = _contents(run_dir)
    with pytest.raises(RegalError) as info:
        ActiveLoop(compose_config(overrides), run_dir).open()
    assert str(info.value) == (
        f"{run_dir}: no state.pt, but queries/round_001.csv (3 labels), selected.csv (3 labels) "
        "hold labels you gave; starting this run over would overwrite them: move them out of "
        "the folder first (labels=FILE gives their labels to a new query), or use another "
        "hydra.run.dir"
    )
    assert _contents(run_dir) == before


def test_a_deleted_pending_query_file_is_written_again(csv, tmp_path):
    run_dir = tmp_path / "run"
    ActiveLoop(compose_config(_overrides(csv)), run_dir).run()
    query = run_dir / "queries" / "round_001.csv"
    asked = pd.read_csv(query, keep_default_na=False)
    query.unlink()
    with pytest.raises(RegalError, match=r"round_001.csv was missing: written again with the 5"):
        ActiveLoop(compose_config(_overrides(csv)), run_dir).open()
    again = pd.read_csv(query, keep_default_na=False)
    assert again[["id", "smiles", "label"]].equals(asked[["id", "smiles", "label"]])
    assert (again["predicted_mean"] == "").all() and (again["predicted_std"] == "").all()
    _fill(query, {1: "0.5"})
    loop = ActiveLoop(compose_config(_overrides(csv)), run_dir).open()
    assert len(loop.dm.labeled) == 33


def test_an_empty_pool_is_refused_before_any_feature_is_computed(qm9_small, tmp_path):
    full = tmp_path / "full.csv"
    full.write_text("smiles,gap\n" + "".join(f"{qm9_small[i].smiles},1.0\n" for i in range(30)))
    cache = tmp_path / "cache" / "molecules"
    extra = ["data.id_column=null", "data.features=[xtb]", f"data.cache_dir={cache}"]
    with pytest.raises(RegalError, match="the pool is empty"):
        ActiveLoop(compose_config(_overrides(full, *extra)), tmp_path / "b")
    assert not list((tmp_path / "cache").glob("features/*/parts/*"))  # no molecule computed
