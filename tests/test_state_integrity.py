"""Damaged ``state.pt`` files: every one refused with the one-line corrupt-state error."""

import struct

import pytest
import torch
from omegaconf import OmegaConf

from regal_torch.errors import RegalError
from regal_torch.loop.state import load_state, read_state, save_state
from regal_torch.status import main as status_main

LABELS = torch.tensor([1.25, 2.5, 3.75])


def _state(**fields):
    """A state with every key the loop reads; ``fields`` override them."""
    base = {
        "fingerprint": {"seed": 0},
        "round": 1,
        "acquired": True,
        "labeled": torch.tensor([4, 7, 9]),
        "labels": LABELS,
        "label_rounds": torch.tensor([0, 0, 1]),
        "pending": None,
        "history": [{"round": 0, "n_labeled": 3, "test_mae": 0.5}],
        "weights": None,
    }
    return {**base, **fields}


def _run_dir(tmp_path):
    """A run folder that ``status`` accepts: its ``.hydra/config.yaml`` and a ``state.pt``."""
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(
        {"seed": 0, "mode": "benchmark", "loop": {"rounds": 2}}, tmp_path / ".hydra" / "config.yaml"
    )
    save_state(tmp_path / "state.pt", _state())
    return tmp_path


def test_a_changed_label_is_refused(tmp_path):
    path = tmp_path / "state.pt"
    save_state(path, _state())
    raw = path.read_bytes()
    old, new = struct.pack("<f", 2.5), struct.pack("<f", 9.0)
    assert raw.count(old) == 1  # the label's bytes, stored as they are
    path.write_bytes(raw.replace(old, new))
    with pytest.raises(RegalError, match="corrupt or truncated.*move it away") as info:
        load_state(path, {"seed": 0})
    assert str(path) in str(info.value)


def test_no_flipped_byte_changes_the_state_silently(tmp_path):
    """Flip each byte of the file in turn: refused, or the very same state (zip padding)."""
    path = tmp_path / "state.pt"
    save_state(path, _state())
    raw = path.read_bytes()
    refused = 0
    for i in range(len(raw)):
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :])
        try:
            state = read_state(path)
        except RegalError as exc:
            assert "corrupt" in str(exc)  # or truncated; or the format is unknown
            refused += 1
            continue
        assert _same(state, _state()), f"byte {i} changed the state"
    assert refused > len(raw) / 2


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return type(a) is type(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(
    "content",
    [
        {"version": 1},
        {"version": 2},
        {"version": 1, "fingerprint": {"seed": 0}, "round": 1},
        {"version": 1, **_state(fingerprint=[1, 2])},
        {"version": 2, "sha256": "0" * 64, "payload": torch.zeros(8, dtype=torch.uint8)},
        {"version": "2"},
        [1, 2, 3],
        torch.zeros(3),
    ],
    ids=["v1 only", "v2 only", "v1 no history", "v1 bad fingerprint", "v2 bad payload",
         "text version", "list", "tensor"],
)  # fmt: skip
def test_valid_torch_file_without_the_state_keys_is_refused(tmp_path, content, capsys):
    run_dir = _run_dir(tmp_path)
    torch.save(content, run_dir / "state.pt")
    with pytest.raises(RegalError, match="corrupt or truncated.*move it away"):
        load_state(run_dir / "state.pt", {"seed": 0})
    assert status_main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupt or truncated" in err and err.count("\n") == 1


def test_state_without_a_checksum_is_read_and_rewritten_with_one(tmp_path):
    """Format 1 (no checksum, written before format 2) still resumes; it is migrated."""
    path = tmp_path / "state.pt"
    torch.save({"version": 1, **_state()}, path)
    state = load_state(path, {"seed": 0})
    assert state["round"] == 1 and torch.equal(state["labels"], LABELS)
    save_state(path, state)  # the loop's next checkpoint
    assert torch.load(path, weights_only=True)["version"] == 2
    assert torch.equal(read_state(path)["labels"], LABELS)


def test_status_reads_a_checksummed_state(tmp_path, capsys):
    assert status_main([str(_run_dir(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "rounds finished: 1 of 3" in out and "labels so far: 3" in out
