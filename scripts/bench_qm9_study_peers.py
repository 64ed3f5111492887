"""Side by side: bmdal-reg's LCMD and scikit-activeml's GSy against ours in the QM9 study.

Compares, round by round and in order, the molecules picked by a peer library's run (scripts/peers,
``strategy=bmdal_lcmd`` / ``skactiveml_gsy``) with those of our strategy's run of the same
seed (``lcmd`` / ``gsy``), the test MAE they reached and the seconds per selection, and
writes the ``qm9-study-peers`` section of BENCHMARKS.md. A peer run may be partial (the
comparison covers the rounds it finished).

    python scripts/bench_qm9_study_peers.py PEER_RUN OURS_RUN [PEER_RUN OURS_RUN ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402


def compare(peer: Path, ours: Path) -> str:
    """One table row: how long the picks agree, the MAE reached, the seconds per selection."""
    picks = {}
    for name, run in (("peer", peer), ("ours", ours)):
        table = pd.read_csv(run / "selected.csv")
        picks[name] = {r: g["position"].tolist() for r, g in table.groupby("round") if r > 0}
    rounds = sorted(picks["peer"])
    same, first_diff = 0, "none"
    for r in rounds:
        a, b = picks["peer"][r], picks["ours"].get(r, [])
        if a != b:
            i = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            first_diff = f"round {r}, pick {i + 1}"
            break
        same += 1
    history = {
        name: pd.read_csv(run / "history.csv") for name, run in (("peer", peer), ("ours", ours))
    }
    n = len(history["peer"])
    mae = [history[name]["test_mae"].iloc[n - 1] for name in ("peer", "ours")]
    select = [
        history[name]["seconds_select"].iloc[: len(rounds)].mean() for name in ("peer", "ours")
    ]
    return (
        f"| {peer.name.split('strategy=')[-1]} | {ours.name.split('strategy=')[-1]} | "
        f"{same} of {len(rounds)} | {first_diff} | {history['peer']['n_labeled'].iloc[n - 1]} | "
        f"{mae[0]:.4f} | {mae[1]:.4f} | {select[0]:.1f} | {select[1]:.2f} |"
    )


def main(pairs: list[str]) -> None:
    rows = [compare(Path(a), Path(b)) for a, b in zip(pairs[::2], pairs[1::2], strict=True)]
    lines = [
        "## QM9 study: peer libraries side by side (seed 0)",
        "",
        "The study's runs with bmdal-reg 3.0.2's LCMD and scikit-activeml 1.0.1's GSy run",
        "through their own libraries on our model's last-layer features and means",
        "(scripts/peers), against our `lcmd` and `gsy` runs of the same seed. Same picks give",
        "the same models, so the learning curves coincide until the picks differ; after a",
        "single differing pick the labeled sets, the models and so all later picks differ.",
        "Seconds per",
        "selection are the runs' own `seconds_select` (one pinned core shared with other",
        "jobs: compare the ratio, and see the strategies section for clean timings).",
        "",
        "| peer run | our run | rounds with identical picks (same order) | first differing pick | "
        "labels | "
        "peer test MAE (eV) | our test MAE (eV) | peer s/selection | our s/selection |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Reproduce: `python scripts/bench_qm9_study_peers.py PEER_RUN OURS_RUN ...`",
    ]
    write_section("qm9-study-peers", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
