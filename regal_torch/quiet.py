"""What the commands show of other libraries: warnings and log records that say nothing to a
user are dropped; whether progress bars are drawn."""

from __future__ import annotations

import logging
import sys
import warnings

from regal_torch.errors import RegalError

_OWN = ("regal_torch", "__main__")


class _OwnInfo(logging.Filter):
    """Keeps every record of regal_torch's own loggers, and other libraries' from WARNING up
    (e.g. gcsfs logs an INFO line on import that every run would print)."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] in _OWN
        return own or record.levelno >= logging.WARNING


def quiet_libraries() -> None:
    """Lightning's notices off, known harmless warnings off, and a filter on the root logger's
    handlers (those Hydra sets up included) that drops other libraries' records below
    WARNING. Call it once the logging configuration is in place."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OwnInfo) for f in handler.filters):
            handler.addFilter(_OwnInfo())
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # A redone round (after a resume) rewrites its own log folder.
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # Lightning's DDP all_gather (pool prediction across processes) calls a deprecated torch API.
    warnings.filterwarnings("ignore", message=".*nn.functional.all_gather is deprecated")


def show_progress(setting: bool | str) -> bool:
    """``progress`` config value (true, false or "auto") -> whether to draw bars.

    Raises:
        RegalError: the value is none of those.
    """
    if setting == "auto":
        return sys.stderr.isatty()
    if isinstance(setting, bool):
        return setting
    raise RegalError(f"progress must be true, false or auto; got {setting!r}")
