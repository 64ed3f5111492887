"""The package's configs, and one-line errors for command-line overrides that Hydra cannot
apply."""

from __future__ import annotations

import difflib
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

# configs/ of the repository (one folder per config group)
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def override_error(config_dir: str, args: list[str]) -> str | None:
    """Why ``python -m regal_torch.run ARGS`` cannot compose, in one line; None if it can.

    Single runs only: sweeps (``--multirun``, comma lists) and Hydra's own options are left to
    Hydra. For an unknown key the message names the closest existing one.
    """
    if any(a.startswith("-") for a in args):
        return None
    # Hydra's own options are checked by Hydra, except the search path: it adds config choices
    # (e.g. hydra.searchpath=[file://my_configs] strategy=mine).
    overrides = [
        a
        for a in args
        if not a.lstrip("+~").startswith("hydra") or a.lstrip("+~").startswith("hydra.searchpath")
    ]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            compose(config_name="config", overrides=overrides)
    except HydraException as exc:
        message = one_line(exc)
        if message.startswith("Could not override"):
            key = message.split("'")[1]
            return (
                f"unknown config option {key!r}{_closest_key(config_dir, overrides, key)} "
                "(python -m regal_torch.run --cfg job lists every option)"
            )
        return message.split("; Config search path")[0].replace(":;", ":")
    return None


def one_line(exc: Exception) -> str:
    """An exception's message with its lines joined: ``first; second; ...``."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _closest_key(config_dir: str, overrides: list[str], key: str) -> str:
    choices = [o for o in overrides if "=" in o and "." not in o.split("=")[0]]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name="config", overrides=choices)
    except HydraException:
        return ""
    keys = _flat_keys(OmegaConf.to_container(cfg), "")
    close = difflib.get_close_matches(key, keys, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _flat_keys(node: object, prefix: str) -> list[str]:
    if not isinstance(node, dict):
        return [prefix[:-1]]
    return [k for key, value in node.items() for k in _flat_keys(value, f"{prefix}{key}.")]
