"""Rules for option values: each says whether a value is allowed, and if not, what is.

A rule is a function of the value that returns ``""`` when the value is allowed and else a
description of what is (``"an integer >= 1"``); :func:`regal_torch.loop.checks.check_config`
turns that into one error line, ``OPTION=VALUE must be ALLOWED``. The loop's and data's rules
are in :mod:`regal_torch.loop.checks`; a model class declares its own options' rules as
``option_rules`` (merged along its bases), so a model's ranges live with the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rule = Callable[[Any], str]

__all__ = ["Rule", "choice", "integer", "number", "switch", "with_note"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(low: int, high: int | None = None, null: bool = False) -> Rule:
    """An integer from ``low`` (to ``high``), or also null."""

    def rule(value: Any) -> str:
        if value is None and null:
            return ""
        if _is_int(value) and value >= low and (high is None or value <= high):
            return ""
        allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        return f"null or {allowed}" if null else allowed

    return rule


def number(low: float, low_open: bool, high: float | None = None, high_open: bool = True) -> Rule:
    """A number above (or from) ``low`` and below (or up to) ``high``."""

    def rule(value: Any) -> str:
        if _is_number(value) and (value > low if low_open else value >= low):
            if high is None or (value < high if high_open else value <= high):
                return ""
        if high is not None:
            up_to = "up to, not including," if high_open else "to"
            return f"a number from {low:g} {up_to} {high:g}"
        return f"a number {'>' if low_open else '>='} {low:g}"

    return rule


def choice(*allowed: Any) -> Rule:
    """One of ``allowed`` (strings as written, or ``True``/``False``)."""
    shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)

    def rule(value: Any) -> str:
        for a in allowed:
            if (a is value) if isinstance(a, bool) or isinstance(value, bool) else a == value:
                return ""
        return f"one of {shown}"

    return rule


def switch(value: Any) -> str:
    """true or false."""
    return "" if isinstance(value, bool) else "true or false"


def with_note(rule: Rule, note: str) -> Rule:
    """``rule``, its description followed by ``note`` (why the range is what it is)."""
    return lambda value: (allowed + note) if (allowed := rule(value)) else ""
