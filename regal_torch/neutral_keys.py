"""The options that do not change a run's results: one list, used by resume and by sweeps.

A run's state records its config less these (:func:`fingerprint`); re-running with other
values of them resumes the run. Hydra's ``override_dirname`` (the sweep's job folder names)
leaves them out through the ``regal_torch_neutral_keys`` resolver in ``configs/config.yaml``,
so a sweep re-run with, say, ``loop.rounds=20`` after ``loop.rounds=10`` finds the same
folders and extends its runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from omegaconf import DictConfig, OmegaConf

NEUTRAL_KEYS = (
    "labels",
    "oracle",
    "logger",
    "progress",
    "on_unserved",
    "loop.rounds",
    "predict.outputs",
    "predict.every_round",
    "predict.chunk_rows",
    "data.dataset.root",
    "data.num_workers",
    "data.cache_dir",
    "data.dataset.num_workers",
    "data.dataset.cache_dir",
    "data.datamodule.num_workers",
    "data.dataset.engine",
    "engine",
    "trainer.logger",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.enable_progress_bar",
)
# Hydra's own options that name folders; they are not in a run's config. And the options of
# neutral groups, which Hydra's exclude_keys (exact names) does not find under the group.
_HYDRA_KEYS = (
    "hydra.run.dir",
    "hydra.sweep.dir",
    "engine.address",
    "engine.num_cpus",
    "engine.workers",
)


def is_neutral(key: str) -> bool:
    """Whether the dotted option ``key`` is one of :data:`NEUTRAL_KEYS` or inside one."""
    return any(key == k or key.startswith(f"{k}.") for k in NEUTRAL_KEYS)


def fingerprint(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The config as flat ``dotted.key: value`` pairs, less the neutral keys (``resolve``:
    interpolations resolved; False for a saved config read outside its Hydra run)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif not is_neutral(prefix[:-1]):
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=resolve), "")
    return flat


_LONGEST_NAME = 255  # bytes of a folder name most file systems allow: every name that worked stays


def job_folder(name: str) -> str:
    """A sweep job's folder name: ``name`` (Hydra's ``override_dirname``), or where it is longer
    than a file system allows, its start and end around a hash of the whole (the same name
    gives the same folder, so a re-run finds it)."""
    raw = name.encode()
    if len(raw) <= _LONGEST_NAME:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:10]
    start, end = (part.decode(errors="ignore") for part in (raw[:90], raw[-90:]))
    return f"{start}...{digest}...{end}"


def register_resolver() -> None:
    """Register ``${regal_torch_neutral_keys:}`` (the neutral keys and Hydra's folder options,
    for ``hydra.job.config.override_dirname.exclude_keys``) and ``${regal_torch_job_folder:}``
    (:func:`job_folder`); called by the entry point."""
    if not OmegaConf.has_resolver("regal_torch_neutral_keys"):
        OmegaConf.register_new_resolver(
            "regal_torch_neutral_keys", lambda: [*NEUTRAL_KEYS, *_HYDRA_KEYS]
        )
    if not OmegaConf.has_resolver("regal_torch_job_folder"):
        OmegaConf.register_new_resolver("regal_torch_job_folder", job_folder)
