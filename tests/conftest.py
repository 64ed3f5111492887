"""Shared fixtures."""

from __future__ import annotations

import pytest

from regal_torch.data.qm9 import QM9Dataset


@pytest.fixture(scope="session")
def qm9_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Cache folder of the session's QM9 subsets (pass as ``data.dataset.root``)."""
    return str(tmp_path_factory.mktemp("qm9"))


@pytest.fixture(scope="session")
def qm9_small(qm9_root: str) -> QM9Dataset:
    """A real 300-molecule QM9 subset (seed 0), built once per session (about 1 s)."""
    return QM9Dataset(qm9_root, subset=300, log=False)
