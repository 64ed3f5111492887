"""The CPU cores this process may use: what a build or a local engine runs on by default."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks, e.g. under SLURM)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
