"""Files of a run are created as a plain open() creates them: readable by the group that
shares a project folder (mode 0o666 less the umask), not 0o600."""

import os
import stat

import pytest
from conftest import compose_config

from regal_torch.files import atomic_write_bytes
from regal_torch.loop.active_loop import ActiveLoop


@pytest.fixture
def umask():
    """Sets the process umask for the test (``umask(0o022)``) and restores it after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_honour_the_umask_and_rewrites_keep_the_mode(tmp_path, umask):
    atomic_write_bytes(tmp_path / "a.csv", b"x")
    assert _mode(tmp_path / "a.csv") == 0o644
    umask(0o002)
    atomic_write_bytes(tmp_path / "b.csv", b"x")
    assert _mode(tmp_path / "b.csv") == 0o664
    (tmp_path / "a.csv").chmod(0o640)
    atomic_write_bytes(tmp_path / "a.csv", b"y")  # as open(path, "wb") would: mode kept
    assert _mode(tmp_path / "a.csv") == 0o640 and (tmp_path / "a.csv").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_a_runs_files_are_readable_by_the_group(tiny, tmp_path, umask):
    ActiveLoop(compose_config([*tiny, "loop.rounds=0", "logger=none"]), tmp_path).run()
    for name in ("state.pt", "history.csv", "selected.csv"):
        assert _mode(tmp_path / name) == 0o644, name
