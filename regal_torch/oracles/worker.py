"""An ``oracle=function`` worker: ``python -m regal_torch.oracles.worker package.module:callable``.

It imports the callable, writes ``"ready"``, then for each line ``[id, smiles]`` (JSON) on its
standard input writes one line ``[label, ""]`` or ``[null, reason]`` until its input ends. The
answers go out on the process's original standard output; what the callable itself prints
(Python or compiled code) goes to standard error instead, so that it cannot mix with them.
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from regal_torch.errors import RegalError
from regal_torch.parent import end_with_parent


def resolve(reference: str) -> Callable[[str, str], Any]:
    """The callable named ``package.module:name``.

    Raises:
        RegalError: not of that form, the module does not import, or it has no such callable.
    """
    module_name, _, name = reference.partition(":")
    if not module_name or not name:
        raise RegalError(
            f"oracle.function={reference!r} must name a callable as package.module:callable"
        )
    try:
        module = importlib.import_module(module_name)
    except RegalError:
        raise
    except Exception as exc:
        raise RegalError(
            f"oracle.function={reference!r}: cannot import {module_name}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise RegalError(f"oracle.function={reference!r}: {module_name} has no callable {name!r}")
    return function


def call(function: Callable[[str, str], Any], ident: str, smiles: str) -> tuple[float | None, str]:
    """``function(ident, smiles)`` as (label, "") or (None, the reason it failed)."""
    try:
        value = function(ident, smiles)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None, f"returned {value!r}, not a number"
    label = float(value)
    if not math.isfinite(label):
        return None, f"returned {label}"
    return label, ""


def serve(reference: str) -> None:
    """Answer tasks on standard input until it ends (the run finished, or died)."""
    end_with_parent(signal.SIGKILL)  # a run killed by SIGKILL takes its workers with it
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        function = resolve(reference)
    except RegalError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    answers.write('"ready"\n')
    answers.flush()
    for line in sys.stdin:
        ident, smiles = json.loads(line)
        answers.write(json.dumps(call(function, ident, smiles)) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
