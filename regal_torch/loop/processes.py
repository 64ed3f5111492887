"""Which process of a multi-process (DDP) run this is, and the checks that keep processes in step.

A run under ``trainer.strategy=ddp`` is one process per device. Lightning starts the others by
running the same command again (``python -m regal_torch.run ...``, with ``hydra.run.dir`` and
``hydra.output_subdir=null`` added) when the first Trainer call begins; under SLURM they are
the job's tasks. Every process runs the whole loop: the same seeded splits and model, training
with averaged gradients, and its shard of each prediction gathered onto every process. Only
the first process (global rank 0) locks the run folder, selects and writes: ``state.pt``, the
tables, ``.hydra/``, query files, logs and progress lines; the others take its picks.
"""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from regal_torch.errors import RegalError
from regal_torch.models.capabilities import capabilities_of


def process_rank() -> int:
    """This process's global rank: 0 alone or first. Known before any Trainer exists, from the
    environment that Lightning's launcher or SLURM set (``RANK``, ``LOCAL_RANK``,
    ``SLURM_PROCID``), as Lightning reads it."""
    return int(rank_zero_only.rank)


def check_processes(trainer: pl.Trainer, model: type, computes_labels: bool) -> None:
    """Refuse a multi-process Trainer the loop cannot keep in step (one process: nothing);
    ``trainer`` is one made from the run's ``trainer`` config, ``model`` the model's class.

    Raises:
        RegalError: a model that declares it runs in one process (the Gaussian processes
            and the last-layer Laplace: their posterior is fitted on the whole labeled set
            in one step), processes that do
            not send their predictions back (``ddp_spawn``), a ``--multirun`` whose
            processes Lightning would start by re-running the command (it would re-run the
            whole sweep), or a closed loop (an oracle that computes labels between rounds
            while the other processes wait in a collective with a timeout).
    """
    if trainer.world_size <= 1:
        return
    strategy = trainer.strategy
    declared = capabilities_of(model)
    if declared is not None and not declared.multi_process:
        raise RegalError(
            f"model {model.__name__} runs in one process (its posterior is fitted on the "
            f"whole labeled set at once); a Trainer of {trainer.world_size} processes is for "
            "the other networks: use trainer.devices=1"
        )
    if type(strategy.launcher).__name__ == "_MultiProcessingLauncher":
        raise RegalError(
            f"trainer.strategy={type(strategy).__name__} with start_method "
            f"{getattr(strategy, '_start_method', 'spawn')!r} runs each round in processes that "
            "do not send their predictions back; use trainer.strategy=ddp (trainer=ddp)"
        )
    external = strategy.cluster_environment.creates_processes_externally
    relaunches = strategy.launcher is not None and not external
    if relaunches and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise RegalError(
            f"--multirun with a Trainer of {trainer.world_size} processes: Lightning starts the "
            "other processes by re-running the command, which would re-run the sweep; run each "
            "point as its own command, or through hydra/launcher=slurm (SLURM starts the tasks)"
        )
    if computes_labels:
        raise RegalError(
            f"this run's oracle computes labels between rounds, and a Trainer of "
            f"{trainer.world_size} processes would leave the others waiting on it past their "
            "collective timeout: run the closed loop with trainer.devices=1"
        )
