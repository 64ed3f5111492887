"""Learn mode's query files: written with empty labels, read back with clear errors."""

import pandas as pd
import pytest
import torch

from regal_torch.errors import RegalError
from regal_torch.loop.queries import (
    QUERY_COLUMNS,
    QueryOracle,
    check_fresh_start,
    query_path,
    read_answers,
    write_query,
)


@pytest.fixture
def query(tmp_path):
    path = query_path(tmp_path, 3)
    write_query(
        path,
        ["a", "b", "c"],
        ["CCO", "CCN", "CCC"],
        torch.tensor([1.0, 2, 3]),
        torch.tensor([0.1, 0.2, 0.3]),
    )
    return path


def test_query_file_layout(query, tmp_path):
    assert query == tmp_path / "queries" / "round_003.csv"
    frame = pd.read_csv(query, keep_default_na=False)
    assert tuple(frame.columns) == QUERY_COLUMNS
    assert frame["id"].tolist() == ["a", "b", "c"] and frame["smiles"].tolist()[0] == "CCO"
    assert frame["predicted_std"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert (frame["label"] == "").all()


def test_partially_filled_query_takes_only_filled_rows(query):
    frame = pd.read_csv(query, dtype=str, keep_default_na=False)
    frame.loc[0, "label"] = "1.5"
    frame.loc[2, "label"] = " -2e-1 "
    frame.to_csv(query, index=False)
    assert read_answers(query, ["a", "b", "c"]) == {"a": 1.5, "c": -0.2}


def test_labels_from_another_file_with_id_and_label_only(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("id,label\nb,7\n")
    assert read_answers(path, ["a", "b"]) == {"b": 7.0}


@pytest.mark.parametrize(
    "text,message",
    [
        ("id,labl\na,1\n", r"no column 'label'; did you mean 'labl'"),
        ("id,label\nz,1\n", r"line 2: id 'z' was not queried"),
        ("id,label\na,1\na,2\n", r"line 3: id 'a' repeats line 2"),
        ("id,label\na,abc\n", r"line 2: label 'abc' is not a finite number"),
        ("id,label\na,nan\n", r"line 2: label 'nan' is not a finite number"),
        ("id,label\na,-inf\n", r"line 2: label '-inf' is not a finite number"),
    ],
)
def test_bad_answers_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "answers.csv"
    path.write_text(text)
    with pytest.raises(RegalError, match=message) as info:
        read_answers(path, ["a", "b"])
    assert "\n" not in str(info.value) and "answers.csv" in str(info.value)


def test_missing_answer_file(tmp_path):
    with pytest.raises(RegalError, match="no such file"):
        read_answers(tmp_path / "absent.csv", ["a"])


def test_answer_lines_count_blank_lines_and_decimal_commas_are_named(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("id,label\n\na,1\n\nz,2\n")
    with pytest.raises(RegalError, match=r"line 5: id 'z' was not queried"):
        read_answers(path, ["a", "b"])
    path.write_text("id,label\na,1,5\n")
    with pytest.raises(RegalError, match=r"line 2: 3 fields, but the header has 2 \(id,label\)"):
        read_answers(path, ["a"])


def _oracle(run_dir):
    return QueryOracle(run_dir, ["a", "b", "c"], ["CCO", "CCN", "CCC"])


def test_a_query_file_holding_labels_is_never_overwritten(tmp_path):
    oracle = _oracle(tmp_path)
    picks, mean = torch.tensor([0, 2]), torch.tensor([1.0, 2.0])
    path = oracle.ask(1, picks, mean, mean)
    assert oracle.ask(1, picks, mean, mean) == path  # no label yet: written again
    path.write_text(path.read_text().replace("CCO,1.0,1.0,", "CCO,1.0,1.0,7.5"))
    before = path.read_bytes()
    with pytest.raises(RegalError, match=r"round_001.csv holds 1 label; refusing to write"):
        oracle.ask(1, picks, mean, mean)
    assert path.read_bytes() == before


def test_starting_over_is_refused_where_files_hold_labels(tmp_path):
    _oracle(tmp_path).ask(1, torch.tensor([0, 1]), torch.zeros(2), torch.ones(2))
    _oracle(tmp_path)  # an empty query file and no selected.csv: nothing to lose
    (tmp_path / "selected.csv").write_text("round,position,mol_id,label\n0,5,5,1.0\n")
    check_fresh_start(tmp_path)  # round 0: the data file's own labels
    (tmp_path / "selected.csv").write_text(
        "round,position,mol_id,label\n0,5,5,1.0\n1,0,0,2.5\n1,1,1,3.5\n"
    )
    with pytest.raises(RegalError) as info:
        _oracle(tmp_path)
    assert str(info.value).startswith(
        f"{tmp_path}: no state.pt, but selected.csv (2 labels) hold labels you gave; "
        "starting this run over would overwrite them"
    )
    query = tmp_path / "queries" / "round_001.csv"
    query.write_text(query.read_text().replace(",0.0,1.0,\n", ",0.0,1.0,4\n", 1))
    with pytest.raises(RegalError, match=r"queries/round_001.csv \(1 label\), selected.csv"):
        check_fresh_start(tmp_path)
    (tmp_path / "state.pt").write_bytes(b"")  # a run with a state resumes: no refusal here
    _oracle(tmp_path)
