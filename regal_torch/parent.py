"""Processes that end with the process that started them.

A run starts processes of its own: Lightning's DDP processes, ``oracle=function``'s workers,
the feature cache's workers. Each asks the kernel to signal it when its parent ends
(:func:`end_with_parent`), so that a run killed with SIGKILL, which cannot pass a signal on,
leaves none of them computing for nobody.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent ends

__all__ = ["end_with_parent"]


def end_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send this process ``sig`` when its parent ends (Linux; elsewhere
    nothing). Lightning's DDP processes take SIGTERM (they stop as on a preemption); workers
    whose results would be thrown away take SIGKILL. If the parent ended before the request
    was made, the signal comes at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent ended before the request was made
        os.kill(os.getpid(), sig)
