"""The state checkpoint: atomic writes, corrupt files and foreign configs refused."""

import pytest
import torch

from regal_torch.errors import RegalError
from regal_torch.files import atomic_write_bytes
from regal_torch.loop.seeds import round_seed
from regal_torch.loop.state import load_state, save_state


def _state(**fields):
    """A state with every key the loop reads; ``fields`` override them."""
    empty = torch.empty(0, dtype=torch.long)
    base = {"fingerprint": {}, "round": 0, "acquired": True, "history": []}
    return {**base, "labeled": empty, "labels": torch.empty(0), "label_rounds": empty, **fields}


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "state.pt"
    save_state(path, _state(fingerprint={"a": 1}, round=2, labeled=torch.arange(5)))
    state = load_state(path, {"a": 1})
    assert state["round"] == 2 and torch.equal(state["labeled"], torch.arange(5))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_state_means_fresh_start(tmp_path):
    assert load_state(tmp_path / "state.pt", {}) is None


def test_truncated_state_is_refused_with_the_path(tmp_path):
    path = tmp_path / "state.pt"
    save_state(path, _state())
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RegalError, match="corrupt or truncated") as info:
        load_state(path, {})
    assert str(path) in str(info.value)


def test_foreign_config_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "state.pt"
    save_state(path, _state(fingerprint={"strategy._target_": "A", "seed": 0}))
    with pytest.raises(RegalError, match="strategy._target_: state has 'A', config has 'B'"):
        load_state(path, {"strategy._target_": "B", "seed": 0})


def test_options_newer_than_the_state_resume_with_a_note(tmp_path, capsys):
    path = tmp_path / "state.pt"
    save_state(path, _state(fingerprint={"seed": 0}, round=3))
    state = load_state(path, {"seed": 0, "loop.new_option": 5})
    assert state["round"] == 3
    assert "resuming with loop.new_option=5" in capsys.readouterr().err
    # an option the config dropped still blocks: the run would silently change
    save_state(path, _state(fingerprint={"seed": 0, "loop.new_option": 5}, round=3))
    with pytest.raises(RegalError, match="loop.new_option: state has 5, config has None"):
        load_state(path, {"seed": 0})


def test_a_run_older_than_the_features_resumes_only_as_it_ran(tmp_path, capsys):
    path = tmp_path / "state.pt"
    save_state(path, _state(fingerprint={"seed": 0}, round=3))
    with pytest.raises(
        RegalError,
        match=r"before data.features existed, so it ran as "
        r"data.features=\[\]; add data.features=\[\] to resume it",
    ):
        load_state(path, {"seed": 0, "data.features": ["minimol"], "model.baseline": None})
    assert load_state(path, {"seed": 0, "data.features": [], "model.baseline": None})["round"] == 3
    assert "data.features=[]" in capsys.readouterr().err


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    class Boom:
        def __len__(self):
            raise OSError("disk full")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, Boom())
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_round_seeds_are_stable_and_distinct():
    assert round_seed(0, 1, 0) == round_seed(0, 1, 0)
    seeds = {round_seed(s, r, k) for s in range(3) for r in range(4) for k in range(3)}
    assert len(seeds) == 36


def test_loading_removes_temporaries_of_killed_writes(tmp_path):
    path = tmp_path / "state.pt"
    save_state(path, _state(round=1))
    stale = tmp_path / ".state.pt.abc123.tmp"
    stale.write_bytes(b"half a state")
    assert load_state(path, {})["round"] == 1
    assert not stale.exists() and path.exists()
