"""Entry point: ``python -m regal_torch.run [hydra overrides]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from regal_torch.errors import RegalError, regal_cause
from regal_torch.lock import RunLock
from regal_torch.neutral_keys import register_resolver
from regal_torch.overrides import CONFIG_DIR, one_line, override_error
from regal_torch.quiet import quiet_libraries
from regal_torch.run_folder import (
    OWN_OVERRIDES,
    new_paths,
    remove_new,
    remove_unused,
    resume_command,
    write_hydra_files,
)

if TYPE_CHECKING:
    import pytorch_lightning as pl

# configs/config.yaml names the result-neutral options through this resolver; registered here
# (not in the package's __init__) so that submitit's job processes, which import this module
# to run the job, have it too.
register_resolver()


def quiet_trainer(max_epochs: int, **options: Any) -> pl.Trainer:
    """A CPU Trainer with no logger, checkpoints, bars, summary or sanity check, for scripts
    and tests that fit or predict outside the loop (``options`` are added or override)."""
    import pytorch_lightning as pl

    settings: dict[str, Any] = dict(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**(settings | options))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> None:
    """One run in Hydra's run folder: lock it, resume or start the loop, run it.

    The loop's constructor checks the folder's state against the config; only once it is
    accepted is ``.hydra/`` written. A run refused before that leaves the folder as it was
    (and removes what Hydra created for it); the error is one line, exit status 2.
    Under a multi-process Trainer only the first process locks and writes the folder
    (:mod:`regal_torch.loop.processes`); the others run in step with it.
    """
    from regal_torch.loop.active_loop import ActiveLoop
    from regal_torch.loop.checks import Unserved
    from regal_torch.loop.processes import process_rank
    from regal_torch.parent import end_with_parent

    quiet_libraries()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    main_process = process_rank() == 0
    if hydra_cfg.job.name.startswith("train_ddp_process_"):  # a process Lightning started
        end_with_parent()
    new = new_paths(run_dir)
    lock = RunLock(run_dir)
    try:
        if main_process:
            lock.acquire()  # before anything reads or writes the folder's state
        try:
            loop = ActiveLoop(cfg, run_dir).open()
        except BaseException:
            if main_process:
                remove_new(run_dir, new)
                lock.release(remove=lock.created)
            raise
        if hydra_cfg.output_subdir is None and main_process:  # main(): .hydra/ is left to us
            write_hydra_files(cfg, run_dir)
        loop.run()
    except (RegalError, InstantiationException) as exc:
        cause = regal_cause(exc) or exc
        if isinstance(cause, Unserved) and cfg.get("on_unserved", "error") == "skip":
            print(f"skipped: {one_line(cause)}", flush=True)  # the sweep goes on without it
            if hydra_cfg.mode == RunMode.MULTIRUN:
                remove_unused(run_dir, Path(hydra_cfg.sweep.dir).absolute())
            return
        print(f"error: {one_line(cause)}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        lock.release()
    if not main_process:
        return
    if loop.pending is not None:
        print(
            f"{len(loop.pending)} molecules to label: fill in the 'label' column of "
            f"{loop.pending_query} (or pass labels=FILE with id,label columns), then re-run:\n"
            f"  {resume_command(hydra_cfg)}",
            flush=True,
        )
    print(f"run directory: {run_dir}", flush=True)


def main() -> None:
    """``python -m regal_torch.run [overrides]``: one-line errors for overrides that do not
    compose, then the Hydra job, with Hydra's own ``.hydra/`` writing left to the job
    (:mod:`regal_torch.run_folder`)."""
    args = sys.argv[1:]
    problem = override_error(CONFIG_DIR, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *_with_own_overrides(args)]
    _job()


def _with_own_overrides(args: list[str]) -> list[str]:
    """``args`` with :data:`OWN_OVERRIDES` (less those the user set) after the user's overrides,
    all of them first: Hydra's parser takes the overrides only as one run of arguments."""
    overrides = get_args_parser().parse_args(args).overrides
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    own = [o for o in OWN_OVERRIDES if o.lstrip("+~").split("=", 1)[0] not in given]
    options = list(args)
    for override in overrides:
        options.remove(override)
    return [*overrides, *own, *options]


if __name__ == "__main__":
    main()
