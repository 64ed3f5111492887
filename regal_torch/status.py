"""``python -m regal_torch.status DIR [DIR ...]``: where a run stands, read from its files.

Prints, for each run directory: the data, model and strategy, the rounds finished out of
``loop.rounds``, the labels so far and the last test MAE, the pending query file of a run in
learn mode, and whether the run is complete.
Reads ``.hydra/`` and ``state.pt`` only; runs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from regal_torch.errors import RegalError
from regal_torch.loop.queries import query_path
from regal_torch.loop.state import RunState


def describe(run_dir: Path) -> str:
    """One paragraph on the run in ``run_dir``.

    Raises:
        RegalError: not a run directory, or its state cannot be read.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.exists():
        raise RegalError(f"{run_dir}: not a regal_torch run directory (no .hydra/config.yaml)")
    cfg = OmegaConf.load(config_path)
    hydra_path = run_dir / ".hydra" / "hydra.yaml"
    choices = OmegaConf.load(hydra_path).hydra.runtime.choices if hydra_path.exists() else {}
    what = ", ".join(f"{g}={choices.get(g, '?')}" for g in ("data", "model", "strategy"))
    lines = [f"{run_dir}: {what}, seed={cfg.seed}, mode={cfg.mode}"]
    state_path = run_dir / "state.pt"
    if not state_path.exists():
        lines.append("  no round finished yet")
        return "\n".join(lines)
    state = RunState.read(state_path)
    history, labeled = state.history, state.labeled
    rounds = cfg.loop.rounds
    finished = len(history)
    lines.append(f"  rounds finished: {finished} of {rounds + 1} (round 0 to {rounds})")
    lines.append(f"  labels so far: {len(labeled)}")
    if history:
        lines.append(f"  last test MAE: {history[-1]['test_mae']:.4f}")
    pending = state.pending
    if pending is not None and state.fingerprint.get("oracle_computes"):
        query = query_path(run_dir, len(history))
        lines.append(
            f"  computing: {len(pending)} molecules by the oracle ({query} holds those done)"
        )
        lines.append("  if the run was stopped, re-run the same command: it computes only the rest")
    elif pending is not None:
        query = query_path(run_dir, len(history))
        lines.append(f"  pending query: {len(pending)} molecules to label in {query}")
        lines.append("  then re-run the same command")
    elif finished > rounds:
        lines.append("  complete")
    else:
        lines.append("  resume: re-run the same command")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m regal_torch.status", description=__doc__.splitlines()[0]
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories")
    args = parser.parse_args(argv)
    try:
        for run_dir in args.dirs:
            print(describe(run_dir))
    except RegalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
