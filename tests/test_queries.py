"""Learn mode's query files: written with empty labels, read back with clear errors."""

import pandas as pd
import pytest
import torch

from regal_torch.errors import RegalError
from regal_torch.loop.queries import QUERY_COLUMNS, query_path, read_answers, write_query


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
