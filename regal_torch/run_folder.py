"""What ``python -m regal_torch.run`` does around the loop in the run folder.

A run that is refused before it starts (bad input, a state of another config, a folder in use)
leaves the folder as it found it: :func:`regal_torch.run.main` has Hydra write no ``.hydra/``
(``hydra.output_subdir=null``) and writes it with :func:`write_hydra_files` once the loop has
accepted the folder, and a refused single run removes the folders and the empty job log
(``run.log``) that Hydra created for it (:class:`NewFolders`, :func:`remove_new`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from regal_torch.files import RUN_HINT, atomic_write_bytes

# Hydra overrides that regal_torch.run adds to every command (not the user's).
OWN_OVERRIDES = (
    "hydra.output_subdir=null",
    "++hydra.callbacks.regal_torch_new_folders._target_=regal_torch.run_folder.NewFolders",
)

_new: tuple[Path, list[Path]] | None = None  # run folder, what did not exist before the run


class NewFolders(Callback):
    """Hydra callback: before a single run, notes which of the run folder, its parents and
    its job log (``<job name>.log``) do not exist yet: Hydra creates them before the job
    starts. Sweeps note nothing.

    A run folder (or a sweep's folder) that cannot be created or written stops the command
    here, before Hydra tries to create it: one ``error:`` line, exit status 2
    (:func:`folder_problem`).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _new
        HydraConfig.instance().set_config(config)  # resolves hydra.run.dir as run_job does
        run_dir = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
        _refuse_unwritable("hydra.run.dir", run_dir)
        paths = [run_dir / f"{config.hydra.job.name}.log", run_dir, *run_dir.parents]
        _new = run_dir, [p for p in paths if not p.exists()]

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        sweep_dir = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.sweep.dir"))))
        _refuse_unwritable("hydra.sweep.dir", sweep_dir)


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written by this process, or None if it can.

    Looks at the folder, or if it does not exist at its nearest existing parent: a file there,
    or no permission to write in it (or a read-only file system).
    """
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def _refuse_unwritable(key: str, folder: Path) -> None:
    """Stop with one line if ``folder`` cannot be written, or cannot be created (a folder the
    permissions allow, on a file system that refuses it: ``/proc``). A folder created here to
    find out is removed again (Hydra creates it for the run)."""
    problem = folder_problem(folder)
    if problem is None:
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create it ({exc.strerror or exc})"
        for created in missing:  # deepest first
            try:
                created.rmdir()
            except OSError:
                break
    if problem:
        print(f"error: {key}={folder}: cannot write the run there: {problem}", file=sys.stderr)
        sys.exit(2)


def new_paths(run_dir: Path) -> list[Path]:
    """What did not exist before Hydra started the run in ``run_dir``, deepest first: its
    job log, the folder, its parents (empty if unknown, as in sweeps)."""
    if _new is None or _new[0] != Path(run_dir):
        return []
    return list(_new[1])


def remove_new(run_dir: Path, new: list[Path]) -> None:
    """Undo what Hydra created for a refused run that holds the lock of ``run_dir``: the
    folder itself if it is in ``new`` (with all in it), else the job log if new and empty;
    then the parents in ``new`` that are empty (another run may have put a folder in one)."""
    run_dir = Path(run_dir)
    if run_dir in new:
        shutil.rmtree(run_dir, ignore_errors=True)
    for path in new:
        if path.parent == run_dir and path.is_file() and path.stat().st_size == 0:
            path.unlink()
    for folder in [p for p in new if p in run_dir.parents]:
        try:
            folder.rmdir()
        except OSError:
            return


def remove_unused(run_dir: Path, stop: Path) -> None:
    """Remove a job folder of a sweep that holds nothing but Hydra's job logs (a skipped job,
    ``on_unserved=skip``), and its parents up to ``stop`` (the sweep folder) that are then
    empty. A folder holding anything else is left as it is."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in run_dir.parents:
        if folder == Path(stop) or Path(stop) not in folder.parents:
            return
        try:
            folder.rmdir()
        except OSError:
            return


def write_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """Write ``run_dir/.hydra/`` as Hydra does (``config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``), each file atomically."""
    hydra_cfg = HydraConfig.get()
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", OmegaConf.create({"hydra": hydra_cfg})),
        ("overrides.yaml", hydra_cfg.overrides.task),
    ):
        atomic_write_bytes(folder / name, OmegaConf.to_yaml(node).encode(), RUN_HINT)


def resume_command(hydra_cfg: DictConfig) -> str:
    """The command that resumes this run from any folder: the run's overrides, the Hydra
    overrides the user gave, and the run folder as an absolute ``hydra.run.dir``; quoted
    for a POSIX shell."""
    hydra_overrides = [
        o
        for o in hydra_cfg.overrides.hydra
        if o not in OWN_OVERRIDES and _key(o) not in ("hydra.run.dir", "hydra.mode")
    ]
    args = [*hydra_cfg.overrides.task, *hydra_overrides]
    args.append(f"hydra.run.dir={hydra_cfg.runtime.output_dir}")
    return shlex.join(["python", "-m", "regal_torch.run", *args])


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]
