"""Entry point: ``python -m regal_torch.run [hydra overrides]``."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from regal_torch.errors import RegalError
from regal_torch.overrides import one_line, override_error

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # A redone round (after a resume) rewrites its own log folder.
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # GP models fit in on_train_start, without an optimizer or validation step of their own.
    warnings.filterwarnings("ignore", message=".*configure_optimizers.*returned.*None.*")
    warnings.filterwarnings("ignore", message=".*You defined a `validation_step` but have no.*")
    warnings.filterwarnings("ignore", message=".*`val_dataloader`.*validation_step.*")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from regal_torch.loop.active_loop import ActiveLoop

    _quiet_lightning()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        loop = ActiveLoop(cfg, run_dir)
        loop.run()
    except (RegalError, InstantiationException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(2)
    if loop.pending is not None:
        command = " ".join(["python -m regal_torch.run", *hydra_cfg.overrides.task])
        print(
            f"{len(loop.pending)} molecules to label: fill in the 'label' column of "
            f"{loop.pending_query} (or pass labels=FILE with id,label columns), then re-run:\n"
            f"  {command}",
            flush=True,
        )
    print(f"run directory: {run_dir}", flush=True)


if __name__ == "__main__":
    problem = override_error(CONFIG_DIR, sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
